# The course's part of a hub's configuration, for any JupyterHub that serves Migration Lab to a room:
# jupyterhub_config.py (one server) loads it, and so can The Littlest JupyterHub (a link to it in
# /opt/tljh/config/jupyterhub_config.d/). It sets the learners' servers only, never the hub's spawner,
# login, address or culler, which belong to the deployment. jupyterhub/README.md says how to run it.
#
# - At every login a spawn hook asks the workshop for the learner (`Workshop(...).ensure(name)`: on the
#   first login it makes their role and their database, cloned from chapter 00's template; afterwards it
#   returns the same) and gives their server LAB_DATABASE_URL. The instructor ran `python -m migration_lab
#   workshop init` in this checkout first; LAB_WORKSHOP_URL (the instructor's role) stays in the hub.
# - Each learner gets their own copy of the course, ~/migration-lab, made by jupyterhub/start-learner on the
#   first login, and lands on chapter 00 in it.
# ruff: noqa: F821
# (traitlets gives a config file its `c`)
import asyncio
import os
from pathlib import Path

from migration_lab.launch.jupyterlab import landing_path
from migration_lab.project import Project
from migration_lab.workshop.instructor import Workshop, server_url

COURSE = Path(os.path.realpath(__file__)).parent.parent  # the checkout this file is in (also when linked to)

WORKSHOP = Workshop(
    server_url(None),  # LAB_WORKSHOP_URL; without it the hub does not start, and says how to give it
    # The learners' URLs: where `workshop add` run in this checkout keeps them, unless LAB_WORKSHOP_ROSTER says.
    roster=Path(os.environ.get("LAB_WORKSHOP_ROSTER") or COURSE / ".lab" / "workshop" / "roster.json"),
    project=Project(COURSE),
)


async def provision(spawner) -> None:
    """Make the learner's role and database on their first login; give their server its LAB_DATABASE_URL.

    A new dict, not an update in place: the configured `environment` may be one object shared by every
    spawner, and one learner's URL must never reach another's server.
    """
    learner = await asyncio.to_thread(WORKSHOP.ensure, spawner.user.name)
    spawner.environment = {**spawner.environment, "LAB_DATABASE_URL": learner.database_url}


c.Spawner.pre_spawn_hook = provision

# The learner's server: their copy of the course, the database checked, then the Jupyter server, on chapter 00.
# `python` is the learners' environment, where requirements.txt is installed (TLJH: /opt/tljh/user).
c.Spawner.cmd = [str(COURSE / "jupyterhub" / "start-learner"), "python", "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = f"/{landing_path()}"
