"""A reviewer's finding: how bad, which rule, what happens, and what to do instead."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": will fail or lose data; "warning": risky; "info": good to know
    rule: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        mark = {"error": "✘", "warning": "⚠", "info": "ℹ"}[self.severity]
        return f"{mark} {self.severity} [{self.rule}] {self.message}" + (f"\n    Fix: {self.fix}" if self.fix else "")
