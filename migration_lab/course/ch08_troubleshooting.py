"""Chapter 08's exercise: read a raw traceback to the line of your project that fails, then fix it."""

import json
import re
from pathlib import Path

from ..lab import Lab
from ..running.tracebacks import cli_traceback
from ..workspace.backups import save_work
from ..workspace.edits import load_models
from . import checks
from .checks import Check
from .round_trip import round_trip

BROKEN_IMPORT = "from main import Base, JobQueue"
BROKEN_ENV_IMPORT = f"{BROKEN_IMPORT}  # noqa: E402  (needs the sys.path line above)"
RECORD = Path(".lab") / "chapter-08-traceback.json"  # the frame the exercise's traceback showed: line and text


def exercise_start(lab: Lab) -> str:
    """A colleague's "quick fix": env.py imports a model that does not exist, tables made by create_all."""
    env = lab.project.service_dir / "migrations" / "env.py"
    with lab.runner.exclusive() as conn:  # the database first: if it is down, no file changes
        # The rebuild wipes the database: the work in it (the cell run again after a kernel restart) is saved
        # first, under the lock, as a reset saves it: no migration of another kernel's slips in between.
        backup = save_work(lab)
        saved = f"\n{backup}" if backup else ""
        env.write_text(re.sub(r"(?m)^from main import .*$", BROKEN_ENV_IMPORT, env.read_text(), count=1))
        lab.db.wipe(conn)
        load_models(lab.project).Base.metadata.create_all(conn)
        conn.commit()
    # The line as the traceback shows it, kept: the learner may answer with its text after fixing it.
    record = lab.project.root / RECORD
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(dict(zip(("line", "text"), _env_import_line(lab), strict=True))))
    return (
        "A colleague's quick fix: migrations/env.py now imports a model `JobQueue`, and the database was "
        "rebuilt with Base.metadata.create_all() (no alembic_version). In a terminal, in ai-service/, "
        "`alembic current` now prints:\n\n"
        f"{cli_traceback(lab.project, 'current') or '(nothing: it runs)'}\n"
        'Which line of your project fails? Put it in `answer` as "file:line", then make '
        f"`alembic upgrade head` work.{saved}"
    )


ENV_PY = "ai-service/migrations/env.py"


def _env_import_line(lab: Lab) -> tuple[int, str]:
    """The line of env.py that imports from main.py: where the exercise's traceback points."""
    return failing_line(lab.project.service_dir / "migrations" / "env.py", r"^from main import") or (0, "")


def _failed_line(lab: Lab) -> tuple[int, tuple[str, ...]]:
    """The line the exercise's traceback pointed at: its number, and its text then and now (fixed, perhaps)."""
    number, now = _env_import_line(lab)
    try:
        kept = json.loads((lab.project.root / RECORD).read_text())
        number, then = int(kept["line"]), str(kept["text"])
    except (OSError, ValueError, KeyError, TypeError):
        then = BROKEN_ENV_IMPORT
    return number, (then, now)


def exercise(lab: Lab, answer: object) -> list[Check]:
    current = lab.runner.run("current")
    at = lab.db.heads()
    number, texts = _failed_line(lab)
    given = answer.strip() if isinstance(answer, str) else ""
    read = "Read the traceback from the bottom up: the error's last line says what failed (an ImportError)"
    return [
        Check(
            "your answer names the line of your project that fails",
            names_the_line(answer, ENV_PY, number, texts),
            (
                (
                    f"{given!r} is a frame of alembic or of Python's import machinery: code you did not write. "
                    + read
                    + "; the frame just above it is the last one in a file of your project."
                )
                if "site-packages" in given or "frozen" in given or re.search(r"(pyfiles|command|config)\.py", given)
                else (
                    f"{read}; the frame just above it is the last one in a file of your project. Which file, "
                    "which line?"
                ),
                'The frame reads File "ai-service/migrations/...", line N. Give it as a string: '
                'answer = "<file>:<line>" (or the line\'s text).',
                f'answer = "{ENV_PY}:{number}"',
            ),
        ),
        checks.Check(
            "alembic can load env.py and the models",
            current.ok,
            (
                f"`alembic current` fails: {current.error}. env.py imports something main.py does not have.",
                'Fix the import line in migrations/env.py with ch.edit_file("migrations/env.py", old, new): '
                "env.py needs only Base: its metadata knows every model main.py defines (and every model module "
                "main.py imports).",
                f'ch.edit_file("migrations/env.py", "{BROKEN_IMPORT}", "from main import Base")',
            )
            if BROKEN_IMPORT in _env_import_line(lab)[1]
            else (  # the colleague's import is fixed: what fails now is something else, said as alembic met it
                f"`alembic current` fails: {current.error}. {current.hint or ''}".strip(),
                "Fix the file and line it names (migrations/env.py, or a revision), save, and run `alembic current` "
                "in a terminal in ai-service/ again: it must print the database's revision, not an error.",
                'ch.alembic("current")',
            ),
        ),
        checks.database_at_head(
            lab,
            (
                "The tables exist (create_all made them) but alembic_version is empty: alembic thinks the database "
                "is at base, and an upgrade would create the tables again."
                if not at
                else f"alembic_version holds {', '.join(at)}, not head: an upgrade from there failed or stopped "
                "(create_all made tables it then meets again?). Alembic trusts alembic_version, never the tables.",
                "When the tables really match the models, record the revision without running it: `stamp`.",
                'ch.alembic("stamp head")',
            ),
        ),
        checks.models_match_database(
            lab,
            (
                "Stamp only when the tables really match the models: they differ.",
                'ch.alembic("check") says how.',
            ),
        ),
        round_trip(
            lab,
            (
                "The history must still build the schema from nothing: `downgrade base` then `upgrade head`.",
                "`alembic history` shows the chain; each downgrade() undoes its upgrade().",
            ),
        ),
    ]


def failing_line(path: Path, pattern: str) -> tuple[int, str] | None:
    """(line number, text) of the first line of `path` matching `pattern`: the line a traceback points at."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.search(pattern, line):
            return number, line.strip()
    return None


# A file and a line number, in every form a learner copies them: "env.py:18", "env.py, line 18",
# 'File "ai-service/migrations/env.py", line 18, in <module>' (the traceback's own frame header), an editor's or a
# web page's "env.py:L18", "env.py#L18", "env.py (line 18)", "env.py line 18", "env.py: line 18", or says them: "line 18
# of env.py", "line 18, env.py".
PY_FILE = r"""[^\s"',:()#]+\.py"""  # a file's name as a learner writes it, with any folders before it
FRAME = re.compile(
    rf"""(?P<file>{PY_FILE})["']?\s*(?:[:#]\s*L?|[,:]?\s*\(?\s*line\b\s*:?|\s+L(?=\d))\s*(?P<line>\d+)""",
    re.IGNORECASE,
)
SAID = re.compile(
    r"""\bline\s+(?P<line>\d+)(?:\s*,\s*(?:(?:of|in)\s+)?|\s+(?:of|in)\s+)["']?(?P<file>[^\s"',:]+\.py)\b""",
    re.IGNORECASE,
)

NAMED_FILE = re.compile(rf"{PY_FILE}\b", re.IGNORECASE)


def _code(text: str) -> str:
    """A line of code as written, whatever was pasted around it: no comment, no indent, single spaces."""
    return " ".join(text.split("#")[0].split())


def names_the_line(answer: object, file: str, number: int, texts: str | tuple[str, ...]) -> bool:
    """Does the answer name that line? As "file:number", "line N of file" or the traceback's frame header (any
    leading folders, any case), or as the line's text: as the traceback showed it (`texts[0]`), or as it reads
    now. Every frame the answer names must be that one: a whole traceback pasted names alembic's frames too. Said
    in other words ("env.py line no. 18", "18 env.py"), it names that file alone and that number alone."""
    if not isinstance(answer, str):
        return False
    frames = [*FRAME.finditer(answer), *SAID.finditer(answer)]
    named = [(Path(m["file"]).name.lower(), int(m["line"])) for m in frames]
    if named:
        return all(frame == (Path(file).name.lower(), number) for frame in named)
    # A file and a number said any other way ("env.py line no. 18", "18 env.py"): that file alone, that number alone.
    files = {Path(found).name.lower() for found in NAMED_FILE.findall(answer)}
    numbers = [int(found) for found in re.findall(r"\d+", NAMED_FILE.sub(" ", answer))]
    if files == {Path(file).name.lower()} and numbers == [number]:
        return True
    lines = [_code(line.strip().strip("\"'")) for line in answer.splitlines()]
    given = [line for line in lines if line and not set(line) <= set("^~ ")]  # a caret line marks, names nothing
    wanted = {_code(t) for t in ((texts,) if isinstance(texts, str) else texts)} - {""}
    return len(given) == 1 and given[0] in wanted
