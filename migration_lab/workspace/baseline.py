"""The pristine files: ai-service/ as a fresh checkout has it, and the revision files chapters add.

They live in the package (`migration_lab/checkpoints/`), so a reset never
depends on what the learner did to their checkout.
"""

from pathlib import Path

CHECKPOINTS_DIR = Path(__file__).parent.parent / "checkpoints"
BASELINE = CHECKPOINTS_DIR / "baseline"
REVISIONS = CHECKPOINTS_DIR / "revisions"


def pristine_files() -> dict[Path, bytes]:
    """ai-service's files as a fresh checkout has them ({path under ai-service/: content})."""
    files = {
        Path("main.py"): (BASELINE / "main.py").read_bytes(),
        Path("migrations/env.py"): (BASELINE / "env.py").read_bytes(),
        Path("database_url.py"): (BASELINE / "database_url.py").read_bytes(),
        Path("alembic.ini"): (BASELINE / "alembic.ini").read_bytes(),
    }
    files.update({Path("migrations/versions") / p.name: p.read_bytes() for p in BASELINE.glob("versions/*.py")})
    return files


def bring_revision(versions_dir: Path, name: str) -> bool:
    """Put the kit's revision file `name` in `versions_dir`, as `git pull` brings a teammate's: True when it is
    there as shipped now; False when a file of that name is there with other text, which is left alone (the
    learner changed it: a set-up cell run again, after a kernel restart, never writes over their work)."""
    target, shipped = versions_dir / name, (REVISIONS / name).read_bytes()
    if target.is_symlink() or target.exists():
        return target.is_file() and not target.is_symlink() and target.read_bytes() == shipped
    target.write_bytes(shipped)
    return True
