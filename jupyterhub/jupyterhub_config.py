# JupyterHub for a Migration Lab workshop on one server (jupyterhub/README.md says how to run it):
#
#     LAB_WORKSHOP_URL=postgresql://postgres:PASSWORD@127.0.0.1:5432/postgres \
#         jupyterhub -f /opt/migration-lab/jupyterhub/jupyterhub_config.py
#
# The learners' servers are course_config.py's (a database of their own on the shared server, their own copy
# of the course, chapter 00); this file adds the hub around them:
# - listening on 127.0.0.1:8000 only: put a TLS proxy in front (or use The Littlest JupyterHub);
# - learners are system users of the group mlab-learners (`useradd -m -G mlab-learners learner01`), who log
#   in with their password; each one's server is a process of their own user (LocalProcessSpawner);
# - idle servers stop after an hour (MLAB_HUB_CULL_IDLE seconds): a kernel holds 100+ MB. Their files and
#   databases stay; logging in again starts the server in seconds.
# ruff: noqa: F821
# (traitlets gives a config file its `c` and `load_subconfig`)
import os
import sys
from pathlib import Path

load_subconfig(str(Path(os.path.realpath(__file__)).parent / "course_config.py"))

c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.spawner_class = "localprocess"
c.LocalAuthenticator.allowed_groups = {"mlab-learners"}

c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={int(os.environ.get('MLAB_HUB_CULL_IDLE', 3600))}",
        ],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
