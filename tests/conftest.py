"""Shared fixtures: a real PostgreSQL for the whole session, a fresh database and
a temporary copy of ai-service/ for each test, so the tracked tree is never touched."""

import itertools
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from migration_lab import EmbeddedBackend, Lab, Project, UrlBackend
from migration_lab.chapters import spec
from migration_lab.notebook import Chapter
from migration_lab.workspace import BASELINE_CHECKPOINT, restore_files

REPO = Path(__file__).resolve().parent.parent
_numbers = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    """One embedded PostgreSQL for the session, stopped and deleted at the end whatever happens.

    Deleted, not just stopped: as root its data lives outside the temporary folder.
    """
    backend = EmbeddedBackend(tmp_path_factory.mktemp("server"), database="postgres")
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()
        assert not backend.is_running(), f"the test server in {backend.pgdata} is still running"
        backend.destroy()


@pytest.fixture
def database_url(server: EmbeddedBackend) -> Iterator[str]:
    """A new, empty database of this test's own on the session's server."""
    name = f"test_{next(_numbers)}"
    admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield make_url(server.url()).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def copy_project(destination: Path) -> Project:
    """A throw-away copy of the checkout's ai-service/, notebooks and compose files.

    Models and migrations come from the pristine baseline, not the working
    tree, which may be half-way through a chapter.
    """
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".env", ".ipynb_checkpoints")
    shutil.copytree(REPO / "ai-service", destination / "ai-service", ignore=ignore)
    shutil.copytree(REPO / "notebooks", destination / "notebooks", ignore=ignore)
    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy(REPO / name, destination / name)
    project = Project(destination)
    restore_files(project, BASELINE_CHECKPOINT)
    return project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return copy_project(tmp_path / "project")


@pytest.fixture
def lab(project: Project, database_url: str) -> Iterator[Lab]:
    """The kit on a copy of ai-service/, against this test's own database."""
    lab = Lab(project, UrlBackend(database_url))
    yield lab
    lab.db.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def edit_model(project: Project, old: str, new: str) -> None:
    """Edit ai-service/main.py of the copy the way a learner would in the editor."""
    main = project.service_dir / "main.py"
    text = main.read_text()
    assert old in text, f"{old!r} is not in main.py"
    main.write_text(text.replace(old, new, 1))


EMAIL_LINE = "    email = Column(String(255), nullable=False, unique=True)\n"
PHONE_LINE = "    phone_number = Column(String, nullable=True)\n"


def add_phone_number(project: Project) -> None:
    """Step 1 of the workflow guide: add phone_number to UserProfile."""
    edit_model(project, EMAIL_LINE, EMAIL_LINE + PHONE_LINE)


def write_revision(
    project: Project, rev: str, down: str | tuple[str, ...] | None, upgrade: str, downgrade: str = "pass"
) -> Path:
    """A hand-written revision file, as a learner writes a data migration."""

    def body(code: str) -> str:
        return textwrap.indent(textwrap.dedent(code).strip(), "    ")

    path = project.versions_dir / f"{rev}_hand_written.py"
    path.write_text(
        f'"""hand written {rev}"""\n'
        "from alembic import op\n"
        "import sqlalchemy as sa\n\n"
        f"revision = {rev!r}\n"
        f"down_revision = {down!r}\n"
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        f"def upgrade():\n{body(upgrade)}\n\n\n"
        f"def downgrade():\n{body(downgrade)}\n"
    )
    return path


def columns(engine: sa.Engine, table: str) -> list[str]:
    return [c["name"] for c in sa.inspect(engine).get_columns(table)]


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def start(lab: Lab, number: str) -> Chapter:
    """Chapter `number` at its exercise's start, as a learner gets there."""
    chapter = Chapter(spec(number), lab)
    chapter.reset()
    chapter.start_exercise()
    return chapter


def failing(chapter: Chapter, answer: object = None) -> dict[str, list[str]]:
    """{check name: its hint levels} of the checks that fail."""
    return {c.name: list(c.hints) for c in chapter.report(answer).checks if not c.passed}
