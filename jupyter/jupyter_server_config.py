# JupyterLab as `make lab` (or `python -m migration_lab lab`) starts it for the course.
# Loaded with `--config=jupyter/jupyter_server_config.py`, after your own Jupyter configuration.
# ruff: noqa: F821
# (traitlets gives a config file its `c`)
import json
import os
import shutil
import sys
import weakref
from pathlib import Path

from jupyter_core.paths import jupyter_runtime_dir

here = Path(__file__).resolve().parent
project = here.parent
venv_bin = Path(sys.executable).parent  # the server runs on the course's venv

# Terminals: your usual login set-up first (a hub or `nohup` would give you `bash -l`, whose
# profile resets PATH), then the course's venv first on PATH and the project as the folder, so
# `cd ai-service && alembic current` and `python -m migration_lab ...` work as typed.
os.environ["MIGRATION_LAB_BIN"] = str(venv_bin)
os.environ["MIGRATION_LAB_ROOT"] = str(project)
bash = shutil.which("bash")
if bash:
    c.ServerApp.terminado_settings = {
        "shell_command": [bash, "-l", "-c", 'exec "$0" --rcfile "$1" -i', bash, str(here / "terminal.bashrc")]
    }
else:  # no bash (rare): the server's PATH, with the venv first, for the default shell
    os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"

# Kernels of closed notebook tabs are shut down after 20 idle minutes (each holds 100+ MB);
# a kernel whose notebook is open is never culled.
c.MappingKernelManager.cull_idle_timeout = 20 * 60
c.MappingKernelManager.cull_interval = 60
c.MappingKernelManager.cull_connected = False
c.MappingKernelManager.cull_busy = False

# The editor follows the kit: jupyter-collaboration watches open files and reloads one that the
# kit changed on disk (`ch.reset()`, `ch.add_column(...)`), and saves the editor's text itself
# (never over a newer file: it reloads instead). Mended here, where upstream leaves gaps:
# - the reload takes the file's new hash too (jupyter-collaboration issue 340), or Ctrl-S in the
#   editor would ask "File Changed: Overwrite or Revert?" about the kit's write;
# - no save can slip in between a change on disk and the reload that takes it in: upstream's
#   watcher marked the file as read before the room had read it, and a save waiting then wrote the
#   editor's older text over the kit's edit (chapter 01's main.py, once in a while on a busy machine).
#   The reload reads the file and puts it in the document under the file's lock, cancels a save still
#   waiting with older text, and sets the hash without scheduling an autosave of its own;
# - a file the kit deleted (a reset, a restore) stays deleted: the record the kit keeps
#   (`.lab/deleted-files.json`, written by migration_lab/workspace/deletions.py as {path: why})
#   makes a save of it fail with a message, and the watcher tells the file's open tabs at once
#   (JupyterLab shows "Document error: ... Close this tab."), once, instead of logging a 404
#   traceback every half second;
# - a file deleted through JupyterLab itself left its watcher raising at every poll, which at
#   shutdown printed "Task exception was never retrieved ... No path found for file ID".
c.YDocExtension.file_poll_interval = 0.5
DELETED_BY_THE_KIT = project / ".lab" / "deleted-files.json"


def _deleted_by_the_kit(api_path: str, root_dir: str) -> str | None:
    """Why the kit deleted this file, if it did and the file is still gone."""
    file = Path(root_dir, api_path.strip("/"))
    if file.exists():
        return None
    try:
        why = json.loads(DELETED_BY_THE_KIT.read_text()).get(str(file.resolve().relative_to(project)))
    except (OSError, ValueError, AttributeError):
        return None
    return why if isinstance(why, str) else None


def _refuse_to_bring_back(model, path, contents_manager, **kwargs) -> None:
    """A pre-save hook: a save may not write back a file the kit deleted (an HTTPError refuses it, with its text)."""
    why = _deleted_by_the_kit(path, contents_manager.root_dir)
    if why:
        from tornado.web import HTTPError

        raise HTTPError(409, f"{path} was deleted by {why}. This tab's text was not saved: close the tab.")


def _contents_that_keep_deleted_files_deleted() -> None:
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

    class LabContents(AsyncLargeFileManager):
        """The server's own contents manager, refusing a save that would bring back a file the kit deleted.

        Registered, not configured: `c.ContentsManager.pre_save_hook` warns "Overriding existing
        pre_save_hook" at every start (traitlets sets it twice)."""

        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.register_pre_save_hook(_refuse_to_bring_back)

    c.ServerApp.contents_manager_class = LabContents


_contents_that_keep_deleted_files_deleted()


def _mend_jupyter_collaboration() -> None:
    try:
        from jupyter_core.utils import ensure_async
        from jupyter_server_ydoc.loaders import FileLoader
        from jupyter_server_ydoc.rooms import DocumentRoom
        from jupyter_server_ydoc.websocketserver import JupyterWebsocketServer
        from tornado.web import HTTPError
    except ImportError:  # jupyter-collaboration not installed: nothing to mend
        return

    rooms: weakref.WeakSet[DocumentRoom] = weakref.WeakSet()  # to find the tabs of a file that is gone
    initialize_room = DocumentRoom.__init__

    def init_and_remember(self, *args, **kwargs) -> None:
        initialize_room(self, *args, **kwargs)
        rooms.add(self)

    async def reload_under_the_files_lock(self) -> None:
        """The file changed on disk: the document takes its text and hash, with no save in between."""
        loader = self._file
        try:
            async with loader._lock:
                model = await ensure_async(
                    loader._contents_manager.get(
                        loader.path, format=self._file_format, type=self._file_type, content=True, require_hash=True
                    )
                )
                waiting = self._saving_document
                if waiting is not None and not waiting.done():
                    waiting.cancel()  # it holds the document's text from before the change: the disk wins
                content = model["content"]
                if self._file_type == "file" and isinstance(content, str):
                    content = content.replace("\r\n", "\n")  # as upstream's load_content does
                loader.last_modified = model["last_modified"]
                async with self._update_lock:  # so the change schedules no autosave of its own
                    if await self._document.aget() != content:
                        await self._document.aset(content)
                    self._document.dirty = False
                    self._document.hash = model["hash"]
        except Exception as error:  # as upstream: said, and the room keeps what it had
            self.log.error("Error loading content from file: %s\n%r", loader._current_path, error)

    async def notify_when_the_room_has_read_it(self) -> None:
        """Upstream's maybe_notify, but `last_modified` advances when the rooms have read the change; and a file
        that is gone is said once, to its tabs."""
        try:
            path = self.path
        except RuntimeError:  # its file id lost its path: deleted through JupyterLab, which closes its own tabs
            return
        filepath_change = do_notify = gone = False
        async with self._lock:
            if self._current_path != path:
                self._current_path = path
                filepath_change = True
            try:
                model = await ensure_async(self._contents_manager.get(path, content=False))
            except HTTPError as error:
                if error.status_code != 404:
                    raise
                gone = True
            else:
                do_notify = self.last_modified is not None and self.last_modified < model["last_modified"]
                if not (do_notify and self._subscriptions):  # else the reload sets it, with what it read
                    self.last_modified = model["last_modified"]
        if gone:
            if not getattr(self, "_mlab_gone", False):
                self._mlab_gone = True
                _tell_the_tabs(self, path)
            return
        self._mlab_gone = False
        if filepath_change:
            for callback in list(self._filepath_subscriptions.values()):
                await ensure_async(callback())
        if do_notify:
            for callback in list(self._subscriptions.values()):
                await callback()
            async with self._lock:  # a reload that failed must not be retried every half second
                if self.last_modified is None or self.last_modified < model["last_modified"]:
                    self.last_modified = model["last_modified"]

    def _tell_the_tabs(loader: FileLoader, path: str) -> None:
        """Close the file's collaborative sessions with a reason JupyterLab shows (at most 123 bytes)."""
        text = (
            "The lab deleted this file (a reset). Close this tab."
            if _deleted_by_the_kit(path, loader._contents_manager.root_dir)
            else "This file was deleted. Close this tab."
        )
        reason = json.dumps({"reason": "initialization_error", "errorReason": text})
        for room in list(rooms):
            if room._file is loader:
                for client in list(room.clients):
                    client.close(1003, reason)

    DocumentRoom.__init__ = init_and_remember
    DocumentRoom._on_outofband_change = reload_under_the_files_lock
    FileLoader.maybe_notify = notify_when_the_room_has_read_it

    # And a stop before any document was opened printed "WebsocketServer not running" with a traceback.
    clean = JupyterWebsocketServer.clean

    async def clean_quietly(self) -> None:
        try:
            await clean(self)
        except RuntimeError as error:
            if "not running" not in str(error):
                raise

    JupyterWebsocketServer.clean = clean_quietly


_mend_jupyter_collaboration()
c.SQLiteYStore.db_path = str(project / ".lab" / "jupyter_ystore.db")  # its history, git-ignored
# Nothing of JupyterLab's own lands in the checkout (`git status` stays clean after a day in the lab): the
# collaboration's session record, which defaults to <root>/.jupyter/, and the editor's checkpoints ("File >
# Revert"), which default to an .ipynb_checkpoints/ folder beside each saved file, migrations/versions/
# included, go to .lab/ (git-ignored), one folder per folder of the project.
c.YDocExtension.session_store_path = str(project / ".lab" / "collaboration_sessions.json")


def _checkpoints_in_lab_state() -> None:
    from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints

    class LabCheckpoints(AsyncFileCheckpoints):
        def checkpoint_path(self, checkpoint_id: str, path: str) -> str:
            parent, name = ("/" + path.strip("/")).rsplit("/", 1)
            base, ext = os.path.splitext(name)
            folder = project / ".lab" / "checkpoints" / parent.strip("/")
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            return str(folder / f"{base}-{checkpoint_id}{ext}")

    c.FileContentsManager.checkpoints_class = LabCheckpoints


_checkpoints_in_lab_state()

# Nothing phones home during a workshop, and no "Would you like to get notified about news?"
# toast over the first chapter: JupyterLab's settings defaults from lab-settings/overrides.json.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.app_settings_dir = str(here / "lab-settings")

# Warnings and errors only in `make lab`'s output: the URL stays the last thing it printed.
c.Application.log_level = "WARN"

# Kernels talk to the server over Unix sockets in Jupyter's runtime folder (yours only), not over
# TCP ports any local user could reach (and ipykernel no longer warns about it); unless that
# folder's path is too long for a socket's name (about 100 bytes: <runtime>/kernel-<uuid>-ipc-N).
if os.name == "posix" and len(os.fsencode(jupyter_runtime_dir())) <= 45:
    c.KernelManager.transport = "ipc"
