"""The url backend: any PostgreSQL named by LAB_DATABASE_URL (a workshop's shared server, CI, your own)."""

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ..errors import LabError
from .backend import Backend, Progress, quiet


class UrlBackend(Backend):
    """Any PostgreSQL named by a URL: a workshop server, a CI service, your own."""

    name = "url"

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self) -> str:
        return self._url

    def where(self) -> str:
        """Where the server is, in words: a URL in a cell's text is a link in JupyterLab, whose colour alone
        sets it apart from the text around it (1.9:1, WCAG asks 3:1); nor can it show a password."""
        url = make_url(self._url)
        host = url.host or url.query.get("host") or "the local socket"  # ?host=/path: a Unix socket's folder
        host = host if isinstance(host, str) else ", ".join(host)
        port = f":{url.port}" if url.port else ""
        user = f", user {url.username}" if url.username else ""
        return f"the server at {host}{port}, database {url.database}{user} (LAB_DATABASE_URL)"

    def is_running(self) -> bool:
        engine = sa.create_engine(self._url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
        try:
            with engine.connect():
                return True
        except sa.exc.OperationalError:
            return False
        finally:
            engine.dispose()

    def start(self, progress: Progress = quiet) -> None:
        if not self.is_running():
            raise LabError(f"Cannot connect to {self.where()}.", self.start_hint())

    def stop(self, progress: Progress = quiet) -> None:
        progress("The server at LAB_DATABASE_URL is not the lab's to stop; nothing done.\n")

    def nuke(self, progress: Progress = quiet) -> None:
        from .connection import LabDatabase

        progress(f"Dropping every table in schema public of {self.where()}\n")
        db = LabDatabase(self._url, where=self.where(), start_hint=self.start_hint())
        with db.lock() as conn:  # waits for a migration another process is running
            db.wipe(conn)

    def start_hint(self) -> str:
        return (
            "Check that the server in LAB_DATABASE_URL runs and the URL is right "
            "(or unset it to use the embedded database)."
        )
