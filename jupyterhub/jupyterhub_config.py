# JupyterHub for a Migration Lab workshop on one server (jupyterhub/README.md says how to run it).
#
#     LAB_WORKSHOP_URL=postgresql://postgres:PASSWORD@127.0.0.1:5432/postgres \
#         jupyterhub -f /opt/migration-lab/jupyterhub/jupyterhub_config.py
#
# - At every login a spawn hook asks the workshop for the learner (`Workshop(...).ensure(name)`: on the
#   first login it makes their role and their database, cloned from chapter 00's template; afterwards it
#   returns the same) and gives their server LAB_DATABASE_URL. The instructor ran `python -m migration_lab
#   workshop init` in this checkout first; LAB_WORKSHOP_URL (the instructor's role) stays in the hub.
# - Each learner gets their own copy of the course, ~/migration-lab, made by jupyterhub/start-learner on the
#   first login, and lands on chapter 00 in it.
# - Idle servers are stopped by jupyterhub-idle-culler; files and databases stay.
# - The hub listens on 127.0.0.1:8000 only: put a TLS proxy in front, or use The Littlest JupyterHub.
#
# Inside The Littlest JupyterHub (this file in /opt/tljh/config/jupyterhub_config.d/), or loaded with
# `load_subconfig` after settings of your own, what is already set stays: TLJH's spawner, authenticator,
# address and idle culler win over the defaults below.
# ruff: noqa: F821
# (traitlets gives a config file its `c` and `load_subconfig`)
import asyncio
import os
import sys
from pathlib import Path

from migration_lab.lab_server import landing_path
from migration_lab.project import Project
from migration_lab.workshop import Workshop, server_url

COURSE = Path(os.path.realpath(__file__)).parent.parent  # the checkout this file is in (also when symlinked)

WORKSHOP = Workshop(
    server_url(None),  # LAB_WORKSHOP_URL; without it the hub does not start, and says how to give it
    roster=COURSE / ".lab" / "workshop" / "roster.json",  # where `workshop add` run in this checkout keeps it
    project=Project(COURSE),
)
LEARNERS_GROUP = "mlab-learners"  # with system users (PAM): who may log in
CULL_IDLE_SECONDS = int(os.environ.get("MLAB_HUB_CULL_IDLE", 3600))


def unset(section: str, name: str) -> bool:
    """Whether nothing loaded before this file (TLJH, a config of yours) set c.<section>.<name>."""
    return name not in c[section]


# The hub, on this machine only.
if unset("JupyterHub", "bind_url") and unset("JupyterHub", "ip") and unset("JupyterHub", "port"):
    c.JupyterHub.bind_url = "http://127.0.0.1:8000"

# Learners: system users (one per learner, `useradd -m -G mlab-learners learner01`), each server a process of
# its own user. TLJH brings its own (SystemdSpawner with memory limits, FirstUseAuthenticator).
if unset("JupyterHub", "spawner_class"):
    c.JupyterHub.spawner_class = "localprocess"
if unset("JupyterHub", "authenticator_class"):
    c.LocalAuthenticator.allowed_groups = {LEARNERS_GROUP}

# The learner's server: their copy of the course, the database up, then the Jupyter server, on chapter 00.
# `python` is the learners' environment, where requirements.txt is installed (TLJH: /opt/tljh/user).
c.Spawner.cmd = [str(COURSE / "jupyterhub" / "start-learner"), "python", "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = f"/{landing_path()}"


async def provision(spawner) -> None:
    """Make the learner's role and database on their first login; give their server its LAB_DATABASE_URL.

    A new dict, not an update in place: the configured `environment` may be one object shared by every
    spawner, and one learner's URL must never reach another's server.
    """
    learner = await asyncio.to_thread(WORKSHOP.ensure, spawner.user.name)
    spawner.environment = {**spawner.environment, "LAB_DATABASE_URL": learner.database_url}


c.Spawner.pre_spawn_hook = provision

# Idle servers stop after an hour without activity (MLAB_HUB_CULL_IDLE seconds): a kernel holds 100+ MB.
# Their files and databases stay; logging in again starts the server in seconds. TLJH culls on its own.
services = list(c.JupyterHub.services) if "services" in c.JupyterHub else []
if not any("cull" in service.get("name", "") for service in services):
    c.JupyterHub.services = [
        *services,
        {
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={CULL_IDLE_SECONDS}"],
        },
    ]
    roles = list(c.JupyterHub.load_roles) if "load_roles" in c.JupyterHub else []
    c.JupyterHub.load_roles = [
        *roles,
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        },
    ]
