"""Errors a learner can act on: each says what happened and what to do next."""


class LabError(Exception):
    """A problem with the lab's set-up (not with the learner's migration).

    `what` says what happened; `next_step` says what to type or do about it.
    The CLI prints both without a traceback.
    """

    def __init__(self, what: str, next_step: str) -> None:
        super().__init__(what)
        self.what = what
        self.next_step = next_step

    def __str__(self) -> str:
        return f"{self.what}\nWhat to do: {self.next_step}"
