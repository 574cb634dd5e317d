"""A JupyterHub for rehearsing the flowlab course on one machine, on 127.0.0.1 only.

    jupyterhub -f assignments/hub/jupyterhub_config.py      # from the repository, venv on PATH

Everything the hub keeps (its database, cookie secret, the users' homes, nbgrader's exchange)
goes to ``_build/hub`` (``FLOWLAB_HUB_STATE`` to move it).  Users log in with any name of
``FLOWLAB_HUB_USERS`` and the password ``FLOWLAB_HUB_PASSWORD`` (a dummy authenticator): the
instructor ``FLOWLAB_HUB_INSTRUCTOR`` (default ``instructor``) works in ``assignments/`` of this
repository (``FLOWLAB_HUB_COURSE`` to use a copy), every other user is a student with a home of their own in ``_build/hub/home``.

Two modes (README.md next to this file):

* default, **rehearsal**: every user's server runs as the Unix user that started the hub
  (``SimpleLocalProcessSpawner``), so any user can read any other's files.  nbgrader's exchange
  then cannot tell students apart by their account, so each student's server is told its nbgrader
  student id (``CourseDirectory.student_id`` = the hub user name, in ``nbgrader_config.py`` next to
  this file).  For trying the course, never for real students.
* ``FLOWLAB_HUB_LOCAL_USERS=1``: real Unix accounts (PAM log-in, ``LocalProcessSpawner``; the
  hub runs as root): each server runs as its user, and the exchange's file permissions keep the
  students' hand-ins and feedback apart (``tests/course/test_semester.py`` checks that model).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STATE = Path(os.environ.get("FLOWLAB_HUB_STATE", REPO / "_build" / "hub")).resolve()
PORT = int(os.environ.get("FLOWLAB_HUB_PORT", "8000"))
INSTRUCTOR = os.environ.get("FLOWLAB_HUB_INSTRUCTOR", "instructor")
USERS = os.environ.get("FLOWLAB_HUB_USERS", f"{INSTRUCTOR},student1,student2").split(",")
LOCAL_USERS = os.environ.get("FLOWLAB_HUB_LOCAL_USERS") == "1"
EXCHANGE = STATE / "exchange"
COURSE = Path(os.environ.get("FLOWLAB_HUB_COURSE", REPO / "assignments")).resolve()
HOMES = STATE / "home"
for folder in (STATE, HOMES):
    folder.mkdir(parents=True, exist_ok=True)
BIN = Path(sys.executable).parent  # the venv that runs the hub runs the users' servers too

# ---- loopback only: the proxy, the hub and every user's server -----------------------------
c.JupyterHub.bind_url = f"http://127.0.0.1:{PORT}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{int(os.environ.get('FLOWLAB_HUB_INTERNAL_PORT', PORT + 2))}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(os.environ.get('FLOWLAB_HUB_API_PORT', PORT + 1))}"
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
if shutil.which("configurable-http-proxy") is None:
    raise SystemExit("the hub needs configurable-http-proxy on PATH: "
                     "npm install -g configurable-http-proxy")
c.Spawner.ip = "127.0.0.1"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")

# ---- who may log in -------------------------------------------------------------------------
c.Authenticator.allowed_users = set(USERS)
c.Authenticator.admin_users = {INSTRUCTOR}
if LOCAL_USERS:
    c.JupyterHub.authenticator_class = "pam"
    c.JupyterHub.spawner_class = "localprocess"
    c.LocalAuthenticator.create_system_users = False  # make the accounts yourself (useradd)
else:
    password = os.environ.get("FLOWLAB_HUB_PASSWORD")
    if not password:
        raise SystemExit("set FLOWLAB_HUB_PASSWORD=... (the one password of this rehearsal hub)")
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = password
    c.JupyterHub.spawner_class = "simple"
    # every user gets a home of their own (their server's root folder and Jupyter folders)
    c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
    if os.geteuid() == 0:  # a rehearsal started as root (a container, CI): servers run as root
        c.Spawner.args = ["--allow-root"]

# ---- every user's server: JupyterLab with nbgrader, from this venv --------------------------
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {
    # nbgrader_config.py next to this file: the exchange, the course id, the student id
    "JUPYTER_CONFIG_PATH": str(HERE),
    "FLOWLAB_HUB_EXCHANGE": str(EXCHANGE),
    "FLOWLAB_HUB_INSTRUCTOR": INSTRUCTOR,
    "FLOWLAB_HUB_COURSE_ROOT": str(COURSE),
    "FLOWLAB_HUB_LOCAL_USERS": "1" if LOCAL_USERS else "0",
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
}
if not LOCAL_USERS:
    c.Spawner.notebook_dir = str(HOMES / "{username}")


def _instructor_in_the_course(spawner) -> None:
    """The instructor's JupyterLab opens on the course folder (formgrader, the nbgrader CLI)."""
    if spawner.user.name == INSTRUCTOR:
        spawner.notebook_dir = str(COURSE)


c.Spawner.pre_spawn_hook = _instructor_in_the_course
