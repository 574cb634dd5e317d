r"""A sandboxed Jupyter kernel for autograding untrusted notebooks.

nbgrader runs every submission's code on the instructor's machine and "does not protect against
unsafe code".  This module starts each grading kernel inside `bubblewrap
<https://github.com/containers/bubblewrap>`_ (``bwrap``):

* **file system** — a fresh, empty root with read-only views of the system (``/usr``, a few files
  of ``/etc``), the Python installation and virtual environment that run the kernel, and the
  grader's reference code (the :mod:`flowlab` package, hidden-test helpers included).  The
  course directory — ``source/``, ``release/``, other students' folders, ``gradebook.db`` — is
  *not* mounted.  The submission's working copy is a size-limited scratch ``tmpfs`` on top of
  read-only copies of its files; ``/tmp`` and ``/dev/shm`` are private and size-limited too;
* **no network** — a new network namespace with only a loopback device.  The kernel talks to
  the grader through Unix-domain sockets in a private directory (``transport = "ipc"``);
* **limits** (``setrlimit`` inside the sandbox): address space, CPU seconds, processes and
  threads, open files, size of one file, no core files;
* **a scrubbed environment** — only ``PATH``, ``HOME=/tmp``, locale, thread counts and the
  variables named in ``pass_env`` (``NBGRADER_EXECUTION`` by default) reach the kernel;
* a new PID namespace (the kernel sees only its own processes; all of them die with it) and no
  capabilities.  When the grader runs as *root*, the kernel runs as an unprivileged user id of
  its own (``RLIMIT_NPROC`` does not apply to root);
* **a cell guard** in IPython kernels: a cell that leaves the sandbox (almost) out of processes
  — a fork bomb — has every process but the kernel ended when it finishes, so that the next
  cells run normally and are graded on their own.

Use it from ``nbgrader_config.py``::

    from flowlab_course.sandbox import configure
    configure(c)                       # on where bubblewrap works, a warning where it does not

The package's modules, one idea each:

* :mod:`.settings` — :class:`SandboxSettings` (the limits) and the paths inside the sandbox;
* :mod:`.command` — the ``bwrap`` command line (:func:`sandbox_command`, :func:`bwrap_available`);
* :mod:`.bootstrap` — the first program inside the sandbox (limits, user id, then the kernel);
* :mod:`.cell_guard` — the IPython start-up file that ends a fork bomb's leftovers after a cell;
* :mod:`.launcher` — the kernel manager's command: starts bubblewrap, reports the sandbox pid;
* :mod:`.manager` — :class:`SandboxKernelManager` and :func:`configure` (the Jupyter side).

The first four use the standard library only, so a sandboxed kernel costs one short extra
Python start-up; ``import flowlab_course.sandbox`` loads jupyter_client only when the kernel
manager is asked for.
"""

from __future__ import annotations

from typing import Any

from .command import bwrap_available, sandbox_command
from .settings import SandboxSettings

__all__ = ["SandboxKernelManager", "SandboxSettings", "bwrap_available", "configure",
           "sandbox_command"]


def __getattr__(name: str) -> Any:  # the Jupyter side only when it is used (PEP 562)
    if name in ("SandboxKernelManager", "configure"):
        from . import manager

        return getattr(manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
