"""What a notebook cell calls: one chapter, one object, one call per cell.

    import migration_lab as ml
    ch = ml.chapter("01")                 # reset to the chapter's start
    ch.add_column("UserProfile", "phone_number = Column(String, nullable=True)")
    ch.alembic('revision --autogenerate -m "Add phone number to profile"')

Everything prints plain text or Markdown with no timings, absolute paths or
object ids beyond what the nbval sanitize file replaces, so committed outputs
stay comparable.
"""

import dataclasses
import functools
import json
import os
import re
import reprlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from alembic.script import Script
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from IPython.display import Markdown, display

from ..course import app_client, registry
from ..course.checks import Check, Report, one_history
from ..course.registry import ChapterSpec, spec
from ..course.teammates import teammate_arrives
from ..database import schema
from ..database.sql import said
from ..errors import BrokenConfig, CommandLineError, LabError
from ..lab import Lab
from ..running import history, policy
from ..running.rehearsal import rehearse
from ..running.runner import RunResult
from ..tools import graph, migration_tests
from ..tools.review import review, squawk
from ..workspace import deletions, progress
from ..workspace.edits import (
    ModelEdit,
    add_column,
    apply_edit,
    load_models,
    rename_column,
    replace_function_body,
    replace_text,
)
from ..workspace.revisions import clean_slate, editable_script, find_script, newest_script, refuse_if_applied
from . import answers
from .widgets import CheckButton, MigrationConsole, executed_cells, refresh_consoles, user_namespace

P = ParamSpec("P")
R = TypeVar("R")


def _then_refresh(method: Callable[Concatenate["Chapter", P], R]) -> Callable[Concatenate["Chapter", P], R]:
    """A call that may change files or the database: the consoles of this kernel show the result after it."""

    @functools.wraps(method)
    def call(self: "Chapter", *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        finally:
            refresh_consoles(self.lab)

    return call


class Chapter:
    """One chapter's lab: its checkpoint, exercise and solution, and the calls its cells make."""

    def __init__(self, spec: ChapterSpec, lab: Lab) -> None:
        self.spec = spec
        self.lab = lab
        # The revision id the last command here generated (or the exercise's start brought): "the new one".
        self.generated: str | None = None
        self.confirmation = policy.Confirmation(lab.runner)  # questions asked (STOP), by command line
        self._hints_shown: dict[str, int] = {}  # how many levels of each check's hints were shown

    # --- start, check, solve ---------------------------------------------------------

    @_then_refresh
    def reset(self) -> None:
        """Restore ai-service/ and the database to the start of this chapter (your work is backed up first)."""
        report = registry.reset(self.spec.number, self.lab)
        self.generated = None
        self.confirmation.forget()
        print(f"Chapter {self.spec.number}: {self.spec.title}. {report}")
        print(f"Lab database: {self.lab.backend.where()}")

    @_then_refresh
    def start_exercise(self) -> None:
        """Put the lab where this chapter's exercise starts (for most chapters: where you are)."""
        print(self._set_up_exercise() if self.spec.exercise_setup else "The exercise starts from where you are now.")

    def _set_up_exercise(self) -> str:
        """The exercise's set-up; a single revision file it brings is "the new one" of this kernel, as if generated."""
        assert self.spec.exercise_setup is not None
        before = set(self.lab.project.versions_dir.glob("*.py"))
        said = self.spec.exercise_setup(self.lab)
        brought = set(self.lab.project.versions_dir.glob("*.py")) - before
        if len(brought) == 1:
            path = brought.pop().resolve()
            scripts = history.loaded(self.lab.runner.script(check_history=False))
            self.generated = next((s.revision for s in scripts if Path(s.path).resolve() == path), self.generated)
        return said

    def report(self, answer: object = None) -> Report:
        """The exercise's checks, run against the real database and the revision files.

        A revision whose parent is gone comes first and alone: alembic answers nothing
        then, and any other hint (autogenerate, upgrade) would send the learner the wrong way.
        """
        whole = one_history(self.lab)
        if not whole.passed:
            return Report((whole,))
        try:
            return Report(tuple(self.spec.exercise(self.lab, answer)))
        except (RevisionError, CommandError) as error:  # alembic's, raised or wrapped by its commands
            cause = error if isinstance(error, RevisionError) else error.__cause__
            if not isinstance(cause, RevisionError):
                raise
            return Report((self._not_at_this_chapter(cause),))  # a revision the chapter starts from is missing
        except sa.exc.DBAPIError as error:  # the database, as the checks found it, refused what they ask of it
            return Report((self._unreadable(error),))

    def _unreadable(self, error: sa.exc.DBAPIError) -> Check:
        """The check a grader could not finish: the database refused a query (or went away) half-way."""
        what = f"{type(error.orig).__name__}: {said(error)}"
        if not self.lab.db.is_reachable():
            return Check(
                "the lab database answers",
                False,
                (
                    f"The lab database stopped answering while your work was checked ({what}).",
                    f"{self.lab.backend.start_hint()} Then check again.",
                ),
            )
        return Check(
            "the checks can read your database",
            False,
            (
                f"Checking your work met an error in your database: {what}. Something there is not what a "
                "migration makes (changed by hand: ch.sql, psql, an edit of PostgreSQL's own catalogues?).",
                "ch.start_exercise() (or ch.reset()) brings the chapter's start back, your files backed up first; "
                'then apply your revisions again: ch.alembic("upgrade head").',
            ),
        )

    def _not_at_this_chapter(self, error: RevisionError) -> Check:
        """The check a grader could not run: the chapter's own revisions are missing from the learner's files."""
        return Check(
            f"ai-service/ has chapter {self.spec.number}'s revisions",
            False,
            (
                f"Alembic cannot find a revision this chapter's exercise starts from ({error}): your files are "
                "not where the chapter started (another chapter's reset, or a revision file deleted or renamed).",
                f"ch.reset() brings chapter {self.spec.number}'s files and database back (your work is backed up "
                "first), then ch.start_exercise() if the chapter has one.",
            ),
        )

    def check(self, answer: object = None) -> None:
        """Check my work: every check, and the first hint for the first thing missing.

        A chapter whose exercise is an `answer` reads it from the notebook when none is given.
        """
        print(self.checked(answer))

    def _graded(self, answer: object) -> Report:
        """The report on the answer the notebook holds; an answer typed but never run is said to be that."""
        if not self.spec.answer:
            return self.report(answer)
        namespace = user_namespace()
        if namespace:  # in a notebook: is the answer the kernel has the one the learner typed?
            cells = answers.notebook_cells(answers.notebook_of(namespace))
            not_run = answers.typed_not_run(cells, executed_cells(), namespace)
            if not_run is not None:
                return Report((Check(answers.NOT_RUN_CHECK, False, not_run),))
        return self.report(namespace.get("answer") if answer is None else answer)

    def checked(self, answer: object = None) -> Report:
        """The report "Check my work" shows; its first failing check's first hint counts as shown."""
        report = self._graded(answer)
        first = report.first_failing
        passed = sum(c.passed for c in report.checks)
        # For a workshop's room view; never raises.
        progress.record_check(self.lab, self.spec.number, passed, len(report.checks), first.name if first else None)
        if first is None:
            return report
        shown = self._hints_shown[first.name] = max(self._hints_shown.get(first.name, 0), 1)
        return dataclasses.replace(report, hints_shown=shown)

    def hint(self, answer: object = None) -> None:
        """The next hint for the first check that fails: the idea first, then the API, the code last."""
        print(self.next_hint(answer))

    def next_hint(self, answer: object = None) -> str:
        """The next level of hint for the first failing check, saying which level of how many."""
        first = self._graded(answer).first_failing
        if first is None:
            return "All checks pass: nothing to hint at. Well done!"
        total = len(first.hints)
        level = min(self._hints_shown.get(first.name, 0) + 1, total)
        self._hints_shown[first.name] = level
        lines = [f"✘ {first.name}", f"{first.label(level)}: {first.hints[level - 1]}"]
        if level < total:
            lines.append(f"Still stuck? ch.hint() (or the Next hint button) gives hint {level + 1} of {total}.")
        else:
            lines.append("That was the last hint. ch.solution() shows the whole solution and runs it.")
        if level > 1:
            lines.append("ch.hints() shows the earlier hints again.")
        return "\n".join(lines)

    def hints(self, answer: object = None) -> None:
        """Every hint shown so far for the first check that fails, to read them again."""
        print(self.shown_hints(answer))

    def shown_hints(self, answer: object = None) -> str:
        """The levels of hints already shown for the first failing check, in order (nothing new is shown)."""
        first = self._graded(answer).first_failing
        if first is None:
            return "All checks pass: nothing to hint at. Well done!"
        total = len(first.hints)
        shown = min(self._hints_shown.get(first.name, 0), total)
        if shown == 0:
            return f"✘ {first.name}\nNo hint shown for it yet: ch.check() shows the first, ch.hint() the next."
        lines = [f"✘ {first.name}", *(f"{first.label(n)}: {first.hints[n - 1]}" for n in range(1, shown + 1))]
        if shown < total:
            lines.append(f"ch.hint() gives hint {shown + 1} of {total}.")
        return "\n".join(lines)

    @property
    def solution_file(self) -> Path:
        return self.lab.project.root / "notebooks" / "solutions" / f"{self.spec.number}.py"

    @_then_refresh
    def solution(self, namespace: dict | None = None) -> None:
        """Show the exercise's solution and run it (in the notebook's namespace), from the exercise's start.

        The lab goes back to where the exercise starts first (the chapter's
        checkpoint and its exercise setup; your work is backed up), so the
        solution runs the same whether you tried something or not, once or again.
        """
        code = self.solution_file.read_text()
        display(Markdown(f"**Solution** (`notebooks/solutions/{self.solution_file.name}`):\n\n```python\n{code}```"))
        report = registry.reset(self.spec.number, self.lab)
        self.generated = None
        self.confirmation.forget()
        print(f"Back to the start of the exercise: database at {', '.join(report.revision) or 'base'}.")
        if report.backup:
            print(report.backup)
        if self.spec.exercise_setup:
            print(self._set_up_exercise())
        if namespace is None:
            namespace = user_namespace()
        namespace.setdefault("ch", self)
        exec(compile(code, str(self.solution_file), "exec"), namespace)

    # --- running alembic ---------------------------------------------------------------

    @_then_refresh
    def alembic(self, line: str, confirm: bool = False, progress: bool = False) -> None:
        """Run `alembic <line>`; a command that would destroy data asks for confirm=True first.

        A command that changes the database is rehearsed on a copy first and then
        run exactly as rehearsed; if it would destroy data (or cannot be
        rehearsed), nothing runs until you say confirm=True.
        progress=True shows a live bar for a migration that logs "<done>/<total> rows"
        (as the batched backfill of chapter 05 does).
        """
        _text("line", line, 'ch.alembic("upgrade head")')
        bar = _ProgressBar() if progress else None
        stages = {
            "planning": "rehearsing on a throw-away copy of the database first (yours is untouched) ...",
            "stopped": "stopped: nothing was run",
            "running": "running on your database ...",
        }
        try:
            turn = self.confirmation.request(
                line,
                confirmed=confirm,
                on_log=bar.on_log if bar else None,
                say=(lambda stage: bar.say(stages[stage])) if bar else None,
            )
        except CommandLineError as error:
            print(self.lab.runner.refuse(line, "input", error.what, error.next_step))
            return
        if bar and turn.result is not None:
            bar.finish(turn.result.ok)
        if turn.result is None:
            self._stop(line, turn.plan)
        elif policy.moved(turn.result):
            print(turn.result)
            if turn.question is not None:
                self._stop(line, turn.question)
        else:
            self._show(turn.result)

    def _stop(self, line: str, checked: policy.Plan) -> None:
        """Say what the command would destroy; a confirm=True answers it."""
        print(f"$ {checked.command.local}")
        print(red(f"STOP: {checked.question()}"))
        print(f"Nothing was done. If you mean it: ch.alembic({line!r}, confirm=True)")

    def _show(self, result: RunResult) -> None:
        if not result.ok and result.error:
            progress.record_error(self.lab, self.spec.number, result.error)  # for a workshop's room view
        if result.new_revisions:
            self.generated = result.new_revisions[-1]
        print(result)

    def _script(self, revision: str | None = None) -> Script:
        scripts = self.lab.runner.script()
        return newest_script(scripts, self.generated) if revision is None else find_script(scripts, revision)

    def rehearse(self, line: str, show_table: str | None = None) -> None:
        """Run a command on a throw-away copy of the database: see what it would do, change nothing."""
        rehearsal = rehearse(self.lab.runner, line, show_table=show_table)
        print(red_losses(str(rehearsal)))
        if rehearsal.preview is not None:
            print(f"\n{show_table} as it would be afterwards:")
            print(_table(rehearsal.preview, list(rehearsal.preview_columns)))

    def squawk(self, line: str) -> None:
        """The SQL of `alembic <line> --sql`, and what squawk says about it."""
        result = self.lab.runner.run(f"{line} --sql")
        if not result.ok:
            print(result)
            return
        display(Markdown(f"`alembic {line} --sql`:\n\n```sql\n{result.stdout.strip()}\n```"))
        findings = squawk(result.stdout)
        print("\n".join(map(str, findings)) if findings else "squawk: nothing to point out.")

    def run_migration_tests(self, *tests: str) -> None:
        """pytest-alembic's built-in checks on these migrations (all four, or the ones named)."""
        passed, report = migration_tests.run(self.lab, tests or migration_tests.BUILT_IN)
        print(report)
        print("All migration tests pass." if passed else "Some migration tests FAIL: CI would stop here.")

    @_then_refresh
    def create_all(self) -> None:
        """What an old `init_db()` did: create every table straight from the models, without Alembic."""
        models = load_models(self.lab.project)
        with self.lab.runner.exclusive() as conn:
            models.Base.metadata.create_all(conn)
            conn.commit()
        print(f"Base.metadata.create_all(): created {', '.join(sorted(models.Base.metadata.tables))}")

    @_then_refresh
    def nuke(self, confirm: bool = False) -> None:
        """Drop all data: the lab's `docker compose down -v`. Asks for confirm=True first."""
        if not confirm:
            print(
                f"This deletes every table and row in {self.lab.backend.where()}.\n"
                "If you mean it: ch.nuke(confirm=True)"
            )
            return
        print(self.lab.nuke(progress=lambda message: None))

    @_then_refresh
    def teammate_revision(self, name: str) -> None:
        """A teammate's branch arrives (as `git pull` would bring it): their model change and revision."""
        came = teammate_arrives(self.lab.project, name)
        print(f"{name.capitalize()}'s revision arrived: ai-service/migrations/versions/{came.revision}")
        if came.kept_yours:
            print(
                f"A file of that name with your changes was there: it is kept, not replaced by {name.capitalize()}'s. "
                "ch.reset() starts the chapter over (it backs up your work first)."
            )
        if came.diff:
            display(Markdown(f"```diff\n{came.diff}```"))

    # --- the learner's files -----------------------------------------------------------

    def edit_file(self, path: str, old: str, new: str, confirm: bool = False) -> None:
        """Replace text in a file of ai-service/ (e.g. "migrations/env.py"), and show the diff.

        A revision file the database has applied is left alone unless confirm=True.
        """
        example = 'ch.edit_file("migrations/env.py", "old text", "new text")'
        for name, given in (("path", path), ("old", old)):
            _text(name, given, example)
        _text("new", new, example, empty_ok=True)
        target = self._existing(path)
        self._refuse_if_applied(target, confirm, deleting=False)
        self._edit(target, replace_text(old, new))

    @_then_refresh
    def delete_file(self, path: str, confirm: bool = False) -> None:
        """Delete a file of ai-service/ (e.g. a revision), as `rm` would.

        A revision file the database has applied is left alone unless confirm=True:
        the database would be at a revision no file holds.
        """
        _text("path", path, 'ch.delete_file("migrations/versions/<id>_<slug>.py")')
        target = self._existing(path, links_too=True)
        self._refuse_if_applied(target, confirm, deleting=True)
        deletions.delete(self.lab.project, [target], "ch.delete_file()")
        print(f"Deleted ai-service/{path}")

    def _refuse_if_applied(self, target: Path, confirm: bool, deleting: bool) -> None:
        """`refuse_if_applied`, for a file that may be a revision. While alembic cannot read alembic.ini, only a
        file that is no Python (alembic.ini itself: the way to mend it) may change: which revisions are applied
        cannot be told."""
        try:
            scripts = self.lab.runner.script(check_history=False)
        except BrokenConfig:
            if target.suffix == ".py":
                raise
            return
        refuse_if_applied(scripts, self.lab.db.heads, target, confirm, deleting)

    def _existing(self, path: str, links_too: bool = False) -> Path:
        """The file `path` of ai-service/ names, as the learner sees it: a link stays the link (deleted, the link
        goes, never its target), and its target must be in ai-service/ too. `links_too`: a link whose target is
        gone counts (it can be deleted). A LabError if there is none (ch.generated after a restart, say)."""
        service = self.lab.project.service_dir
        target = Path(os.path.normpath(service / path))
        if not (target.is_relative_to(service) and target.resolve().is_relative_to(service.resolve())):
            raise LabError(f"{path} is not a file of ai-service/.", 'Name it from ai-service/: "migrations/env.py".')
        if target.is_file() or (links_too and target.is_symlink()):
            return target
        forgot = self.generated is None and "None" in path
        raise LabError(
            f"There is no file ai-service/{path}."
            + (
                " ch.generated is None: no revision was generated in this kernel since the chapter started."
                if forgot
                else ""
            ),
            "Run the cell that generates the revision first, or name the file (`ls ai-service/migrations/versions/`)."
            if forgot
            else "Check the name: `ls ai-service/` and `ls ai-service/migrations/versions/` list the files.",
        )

    @_then_refresh
    def clean_versions(self) -> None:
        """Delete every revision file: the nuke option's "start fresh" step, once the database is empty."""
        clean_slate(self.lab.db.heads())
        files = deletions.delete(
            self.lab.project, sorted(self.lab.project.versions_dir.glob("*.py")), "ch.clean_versions()"
        )
        print(f"Deleted {len(files)} revision file(s) from ai-service/migrations/versions/")

    @_then_refresh
    def _edit(self, path: Path, edit: ModelEdit) -> None:
        diff = apply_edit(path, edit, self.lab.project.root)
        display(Markdown(f"```diff\n{diff}```" if diff else "_No change._"))

    def add_column(self, model: str, line: str) -> None:
        """Add a column line to a model in ai-service/main.py, and show the diff."""
        self._edit(self.lab.project.service_dir / "main.py", add_column(model, line))

    def rename_column(self, model: str, old: str, new: str) -> None:
        """Rename a model attribute in ai-service/main.py, and show the diff."""
        self._edit(self.lab.project.service_dir / "main.py", rename_column(model, old, new))

    def edit_model(self, old: str, new: str) -> None:
        """Replace text in ai-service/main.py, and show the diff."""
        self._edit(self.lab.project.service_dir / "main.py", replace_text(old, new))

    def rewrite_revision(
        self,
        upgrade: str | None = None,
        downgrade: str | None = None,
        revision: str | None = None,
        confirm: bool = False,
    ) -> None:
        """Replace the body of upgrade() and/or downgrade(), and show the diff.

        In the revision this kernel generated last, or the one whose name contains
        `revision` (an id or a slug). The upgrade() of a revision the database has
        applied is rewritten only when named and confirm=True; after a kernel restart
        (which forgets what was generated) a revision must be named.
        """
        example = "ch.rewrite_revision(downgrade=\"op.drop_column('t', 'c')\", revision=\"a1c4e7f20b13\")"
        for name, given in (("upgrade", upgrade), ("downgrade", downgrade), ("revision", revision)):
            if given is not None:
                _text(name, given, example)
        script = editable_script(
            self.lab.runner.script(), self.lab.db.heads(), self.generated, revision, upgrade is not None, confirm
        )
        path = Path(script.path)
        edits = [
            replace_function_body(name, body)
            for name, body in (("upgrade", upgrade), ("downgrade", downgrade))
            if body is not None
        ]

        def both(source: str) -> str:
            for edit in edits:
                source = edit(source)
            return source

        self._edit(path, both)

    def review(self, revision: str | None = None, locks: bool = False) -> None:
        """What a careful teammate would say about a revision (default: the newest file).

        `locks=True` adds the lock trace: each statement's locks, rewrites and duration, measured on a copy.
        """
        print(review(self._script(revision).revision, self.lab, locks=locks))

    def show_model(self, model: str) -> None:
        """The model's class in ai-service/main.py, syntax-highlighted."""
        source = (self.lab.project.service_dir / "main.py").read_text()
        match = re.search(rf"^class {model}\(.*?(?=^\S|\Z)", source, re.S | re.M)
        if match is None:
            raise LabError(f"main.py has no class {model}.", "Check the spelling, or reset the chapter.")
        display(Markdown(f"`ai-service/main.py`:\n\n```python\n{match.group(0).rstrip()}\n```"))

    def show_revision(self, revision: str | None = None) -> None:
        """The new revision file (or the one named), where it is and what it says."""
        path = Path(self._script(revision).path)
        name = path.relative_to(self.lab.project.root)
        display(Markdown(f"`{name}`:\n\n```python\n{path.read_text().rstrip()}\n```"))

    # --- looking at the database -------------------------------------------------------

    def schema(self, table: str | None = None) -> None:
        """The live tables and columns (or one table's)."""
        print(schema.render_text(schema.snapshot(self.lab.db.engine), only=table))

    @_then_refresh
    def sql(self, statement: str) -> None:
        """Run one SQL statement on the lab database, as psql would; say how many rows it touched."""
        _text("statement", statement, 'ch.sql("SELECT count(*) FROM user_profiles")')
        with self.lab.db.engine.begin() as conn:
            result = conn.execute(sa.text(statement))
            if result.returns_rows:
                print(_table(result.fetchall(), list(result.keys())))
            else:
                # psql's way: rows for INSERT/UPDATE/DELETE; DDL has no row count (the driver says -1).
                print(f"{result.rowcount} row(s) changed" if result.rowcount >= 0 else "Done.")

    def rows(self, table: str, columns: str = "*") -> None:
        """The rows of a table, as a learner would SELECT them."""
        query = f"SELECT {columns} FROM {table} ORDER BY 1"
        with self.lab.db.engine.connect() as conn:
            result = conn.execute(sa.text(query))
            print(f"{query};\n{_table(result.fetchall(), list(result.keys()))}")

    def graph(self) -> None:
        """The revision graph with the database's position (Mermaid)."""
        display(Markdown(graph.markdown(self.lab.runner.script(), self.lab.db.heads())))

    def api(self, method: str, path: str, body: Any = None) -> None:
        """Call the ai-api, like a client (curl) would."""
        status, payload = app_client.call(self.lab, method, path, body)
        print(f"{method} {path} -> {status}\n{json.dumps(payload, indent=2, default=str)}")

    def console(self):
        """The migration console: buttons for the workflow's commands, schema view, graph."""
        return MigrationConsole(self.lab)

    def check_button(self, answer_name: str | None = None):
        """A "Check my work" button for this chapter's exercise."""
        return CheckButton(self, answer_name)


def _text(name: str, value: object, example: str, empty_ok: bool = False) -> None:
    """Refuse an argument that is not the text a call needs (None, a list, a number, ""): a LabError naming it, what
    it must be and an example, instead of a traceback from deep inside the kit."""
    if isinstance(value, str) and (empty_ok or value.strip()):
        return
    must = "a string" if empty_ok else "a non-empty string"
    raise LabError(
        f"{name} must be {must} (text in quotes), not {reprlib.repr(value)}. Nothing was done.", f"e.g. {example}"
    )


class _ProgressBar:
    """A live bar for a migration that logs "<done>/<total> rows", and a line that says what is happening."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.bar = w.IntProgress(value=0, min=0, max=1, description="migration")
        self.label = w.Label("starting ...")
        display(w.HBox([self.bar, self.label]))

    def say(self, text: str) -> None:
        self.label.value = text

    def on_log(self, line: str) -> None:
        match = re.search(r"(\d+)/(\d+) rows", line)
        if match:
            self.bar.max, self.bar.value = int(match[2]), int(match[1])
            self.label.value = f"{match[1]} of {match[2]} rows"

    def finish(self, ok: bool) -> None:
        if ok:
            self.bar.value = self.bar.max
        self.bar.bar_style = "success" if ok else "danger"
        self.label.value = "done" if ok else "failed: see below"


RED = "\x1b[1;31m"
PLAIN = "\x1b[0m"


def red(text: str) -> str:
    """Text the notebook shows in bold red (ANSI colours render in cell output): data loss, STOP."""
    return f"{RED}{text}{PLAIN}"


def red_losses(text: str) -> str:
    """Every line that says data would be lost, in red."""
    return "\n".join(red(line) if line.startswith(("DATA LOSS", "STOP")) else line for line in text.split("\n"))


def _table(rows: Sequence[Sequence[Any]], header: list[str]) -> str:
    """Rows as a small fixed-width text table."""
    cells = [[("NULL" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), "-+-".join("-" * w for w in widths)] + [fmt.format(*r) for r in cells]
    return "\n".join(line.rstrip() for line in out) + f"\n({len(cells)} {'row' if len(cells) == 1 else 'rows'})"


def _show_lab_error(shell, etype, value, tb, tb_offset=None) -> list[str]:
    """A LabError in a cell: what happened and what to do, without a traceback wall."""
    text = [f"{value.what}\nWhat to do: {value.next_step}"]
    shell._showtraceback(etype, value, text)  # the error, as the notebook shows errors, minus the wall
    return text


_START_HINT = ["Start it (`python -m migration_lab up` in a terminal), then run the cell again."]


def _show_unreachable(shell, etype, value, tb, tb_offset=None) -> list[str] | None:
    """The database gone from under a cell (a call that reads it directly: ch.sql, ch.rows, ch.schema): two
    lines, as the kit's own "Cannot reach" says. An error the server itself raised keeps its traceback."""
    if getattr(value.orig, "pgcode", None) is not None:  # the server answered: a query's own error
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None
    text = [f"The lab database does not answer ({said(value)}).\nWhat to do: {_START_HINT[0]}"]
    shell._showtraceback(etype, value, text)
    return text


def _show_plainly(shell, etype, value, tb, tb_offset=None) -> list[str] | None:
    if isinstance(value, LabError):
        return _show_lab_error(shell, etype, value, tb, tb_offset)
    return _show_unreachable(shell, etype, value, tb, tb_offset)


def show_lab_errors_plainly(lab: Lab | None = None) -> None:
    """In IPython, LabErrors (the database is down, a reset refused) read as two lines, and so does a connection
    the database refused or dropped."""
    from IPython import get_ipython

    if lab is not None:
        _START_HINT[0] = f"{lab.backend.start_hint()} Then run the cell again."
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((LabError, sa.exc.OperationalError), _show_plainly)


def chapter(number: str, lab: Lab | None = None) -> Chapter:
    """Start a chapter: reset ai-service/ and the database to its checkpoint (your work is backed up)."""
    show_lab_errors_plainly()
    lab = lab or Lab()
    show_lab_errors_plainly(lab)
    current = Chapter(spec(number), lab)
    current.reset()
    return current


__all__ = ["Chapter", "chapter"]
