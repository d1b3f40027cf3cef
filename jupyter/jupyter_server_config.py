# JupyterLab as `make lab` (or `python -m migration_lab lab`) starts it for the course.
# Loaded with `--config=jupyter/jupyter_server_config.py`, after your own Jupyter configuration.
# ruff: noqa: F821
# (traitlets gives a config file its `c`)
import os
import shutil
import sys
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
# (never over a newer file: it reloads instead). One gap, filled here: on such a reload it keeps
# the file's old hash (jupyter-collaboration issue 340), so Ctrl-S in the editor would still ask
# "File Changed: Overwrite or Revert?" about the kit's write. The room now also takes the new
# hash, which the browser's document follows.
c.YDocExtension.file_poll_interval = 0.5


def _mend_jupyter_collaboration() -> None:
    try:
        from jupyter_core.utils import ensure_async
        from jupyter_server_ydoc.rooms import DocumentRoom
    except ImportError:  # jupyter-collaboration not installed: nothing to mend
        return
    reload = DocumentRoom._on_outofband_change

    async def reload_and_rehash(self) -> None:
        await reload(self)
        try:
            contents = self._file._contents_manager
            model = await ensure_async(contents.get(self._file.path, content=False, require_hash=True))
            self._document.hash = model["hash"]
        except Exception as error:  # never break the reload itself
            self.log.warning("Migration Lab: could not refresh the hash of %s: %r", self._file.path, error)

    DocumentRoom._on_outofband_change = reload_and_rehash

    # And a stop before any document was opened printed "WebsocketServer not running" with a traceback.
    from jupyter_server_ydoc.websocketserver import JupyterWebsocketServer

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
