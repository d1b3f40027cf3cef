"""What tests (and benchmarks) share besides fixtures: a throw-away copy of the project, edits a learner
makes, a chapter at its exercise's start, and `require`: skip, or fail where CI made a tool mandatory."""

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from migration_lab import Lab, Project
from migration_lab.course.registry import spec
from migration_lab.database.os_accounts import can
from migration_lab.front.notebook import Chapter
from migration_lab.workspace.checkpoints import BASELINE_CHECKPOINT, restore_files

REPO = Path(__file__).resolve().parent.parent


def stop_jupyterlab(lab: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, as the kit's launcher stops JupyterLab, then SIGKILL if it has not stopped in `timeout` s, as the
    launcher does too: jupyter-collaboration can hang in its shutdown after the kernels are gone (a room saved
    while rooms are deleted), which is not what a browser test tests."""
    lab.terminate()
    try:
        lab.wait(timeout)
    except subprocess.TimeoutExpired:
        lab.kill()
        lab.wait(timeout)


def require(variable: str, available: bool, reason: str) -> None:
    """Skip the test when what it needs is missing, saying what; fail instead where CI set `variable`
    (LAB_REQUIRE_BROWSER, LAB_REQUIRE_DOCKER, LAB_REQUIRE_HUB): there it must run."""
    if available:
        return
    if os.environ.get(variable):
        pytest.fail(f"{variable} is set but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


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


def python_for(account: pwd.struct_passwd | None, where: Path) -> Path:
    """A `python` the learner's user can run, with this venv's packages; downloads nothing.

    This venv's interpreter may live where only root can enter (~root/.pyenv). Then a venv from
    the system's Python of the same version, whose only content is a .pth that adds this venv's
    site-packages (and so its .pth files, the kit's editable install among them), and links to its
    Jupyter configuration and data (which enable JupyterLab and name the kernels). When this venv
    itself lies below a folder the user cannot enter (a checkout in root's home or in a `mktemp -d`),
    those are hard-linked copies in `where` instead: nothing is downloaded, nothing's mode changes.
    """
    if account is None or _runs_as(account, Path(sys.executable)):
        return Path(sys.executable).parent
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system_python = Path(f"/usr/bin/python{version}")
    if not system_python.exists():
        pytest.skip(f"the venv's Python is not reachable by {account.pw_name} and there is no {system_python}")
    subprocess.run([system_python, "-m", "venv", "--without-pip", where], check=True)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    if not can(account, "-x", site_packages):
        site_packages = _linked_copy(site_packages, where / "venv-site-packages")
    shim = where / "lib" / f"python{version}" / "site-packages" / "_migration_lab_venv.pth"
    shim.write_text(f"import site; site.addsitedir({str(site_packages)!r})\n")
    for jupyter in ("etc/jupyter", "share/jupyter"):  # Jupyter's extensions and kernels are found by sys.prefix
        source = Path(sys.prefix) / jupyter
        if source.is_dir():
            (where / jupyter).parent.mkdir(parents=True, exist_ok=True)
            if can(account, "-x", source):
                (where / jupyter).symlink_to(source)
            else:
                _linked_copy(source, where / jupyter)
    return where / "bin"


def _linked_copy(folder: Path, copy: Path) -> Path:
    """`folder` again at `copy`: hard links to its files (a full copy where they cannot be linked)."""
    if subprocess.run(["cp", "-al", folder, copy], capture_output=True).returncode != 0:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(folder, copy, symlinks=True)
    return copy


def _runs_as(account: pwd.struct_passwd, program: Path) -> bool:
    try:
        done = subprocess.run(
            [program, "-c", "import migration_lab"],
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
        )
    except PermissionError:  # a folder on its path is closed to that user
        return False
    return done.returncode == 0


def rewritten_bodies(notebook: str) -> list[dict[str, str]]:
    """The bodies a chapter's `ch.rewrite_revision(upgrade=..., downgrade=...)` cells give, in the notebook's order:
    tests run the very revisions the chapter writes."""
    import ast
    import json

    found = []
    for cell in json.loads((REPO / "notebooks" / notebook).read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "rewrite_revision":
                found.append({k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg})
    return found
