"""nbgrader's settings for every user of the rehearsal hub (jupyterhub_config.py puts this folder
on JUPYTER_CONFIG_PATH of each user's server and sets the FLOWLAB_HUB_* variables read here)."""

import os

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.Exchange.root = os.environ["FLOWLAB_HUB_EXCHANGE"]
c.CourseDirectory.course_id = "flowlab"  # = assignments/nbgrader_config.py

user = os.environ.get("JUPYTERHUB_USER", "")
if user and user == os.environ.get("FLOWLAB_HUB_INSTRUCTOR"):
    # the instructor's nbgrader commands and formgrader work on the course in the repository
    c.CourseDirectory.root = os.environ["FLOWLAB_HUB_COURSE_ROOT"]
elif user and os.environ.get("FLOWLAB_HUB_LOCAL_USERS") != "1":
    # Rehearsal mode: all servers run as one Unix user, from which nbgrader would take the same
    # student id for everybody; each student hands in and fetches feedback under their hub name.
    c.CourseDirectory.student_id = user
