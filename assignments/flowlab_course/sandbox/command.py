"""The ``bwrap`` command line that runs one kernel in the sandbox (standard library only).

What the sandbox shows the kernel: a fresh, empty root with read-only views of the system
(``/usr``, a few files of ``/etc``), the Python installation and virtual environment that run
the kernel, and the library the notebooks import (:mod:`flowlab`) — while a submission is graded,
the *redacted* flowlab (``settings.replace_packages``), mounted where flowlab is found (so an
editable install's finder, which maps ``flowlab`` to that path, finds the copy too), and no
other mounted path holding flowlab's real source.  The course directory —
``source/``, ``release/``, the graders of :mod:`flowlab_course`, other students' folders,
``gradebook.db`` — is *not* mounted; the submission's working copy is a size-limited ``tmpfs``
with read-only copies of its files (the notebooks being graded left out).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence

from .settings import ETC_FILES, INNER_DIR, STARTUP_FILE, SYSTEM_DIRS, SandboxSettings

__all__ = ["sandbox_command", "bwrap_available"]

_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def _source(name: str) -> str:
    """The text of a program of this folder that runs inside the sandbox (it is not mounted)."""
    with open(os.path.join(_HERE, name)) as handle:
        return handle.read()


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _package_dirs(names: Iterable[str]) -> list[str]:
    """Directories of top-level packages, found without importing them."""
    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(spec.submodule_search_locations)
    return dirs


def _python_dirs(executables: Sequence[str]) -> list[str]:
    """The installation(s) a Python kernel needs: prefixes, ``sys.path``, the interpreters."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    paths += [p for p in sys.path if p and os.path.isabs(p)]
    for exe in executables:
        for candidate in {os.path.abspath(exe), os.path.realpath(exe)}:
            # .../bin/python -> the prefix ...
            paths.append(os.path.dirname(os.path.dirname(candidate)))
    return paths


def _read_only_binds(
    settings: SandboxSettings, kernel_argv: Sequence[str], workdir: str
) -> list[str]:
    """Host paths to mount read-only: the Python installation and the grader's packages.

    A candidate that *contains* the working directory or a hidden path (for instance a
    repository root on ``sys.path`` that also holds the course) is dropped: mounting it would
    expose the solutions and the other submissions.
    """
    exe = shutil.which(kernel_argv[0]) or kernel_argv[0]
    candidates = _python_dirs([exe, sys.executable])
    candidates += _package_dirs(settings.packages) + list(settings.extra_ro_paths)
    guarded = [os.path.realpath(p) for p in [workdir, *settings.hidden_paths]]
    replaced = [d for d, _ in _replacements(settings)]
    binds: list[str] = []
    for path in candidates:
        for variant in {os.path.abspath(path), os.path.realpath(path)}:
            if not os.path.exists(variant) or variant == "/":
                continue
            if any(_is_within(g, variant) for g in guarded):
                continue  # an ancestor of the course: never mount it
            if any(_is_within(variant, r) for r in replaced):
                continue  # the replaced package itself: its replacement is mounted there
            if any(_is_within(r, variant) and not _is_site_packages(os.path.dirname(r))
                   for r in replaced):
                continue  # a folder that holds the real source of a replaced package (a checkout)
            if any(_is_within(variant, s) for s in SYSTEM_DIRS if os.path.isdir(s)):
                continue  # already visible
            binds.append(variant)
    # drop duplicates and paths inside another bound path
    binds = sorted(set(binds), key=len)
    kept: list[str] = []
    for path in binds:
        if not any(_is_within(path, k) for k in kept):
            kept.append(path)
    return kept


def _is_site_packages(path: str) -> bool:
    return os.path.basename(path.rstrip("/")) in ("site-packages", "dist-packages")


def _replacements(settings: SandboxSettings) -> list[tuple[str, str]]:
    """``(where the package is found, what to mount there)`` for ``settings.replace_packages``.

    Both the path the import system reports and its real path are covered, so that neither a
    symbolic link nor an editable install's finder leads to the original.
    """
    out = []
    for name, replacement in sorted(settings.replace_packages.items()):
        if not os.path.isdir(replacement):
            raise FileNotFoundError(f"the replacement of {name!r} does not exist: {replacement}")
        for found in _package_dirs([name]):
            for variant in sorted({os.path.abspath(found), os.path.realpath(found)}):
                out.append((variant, os.path.realpath(replacement)))
    return out


def _parents(path: str) -> list[str]:
    """``--dir`` options that create ``path``'s missing parents traversable (mode 0755).

    bubblewrap would otherwise create them as 0700 directories owned by root, which an
    unprivileged kernel cannot enter.
    """
    args: list[str] = []
    parent = os.path.dirname(path)
    chain = []
    while parent not in ("/", "/tmp", ""):
        chain.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(chain):
        if not any(_is_within(folder, s) for s in SYSTEM_DIRS):
            args += ["--perms", "0755", "--dir", folder]
    return args


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ETC_FILES:
        path = os.path.join("/etc", name)
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _environment(settings: SandboxSettings, kernel_argv: Sequence[str]) -> dict:
    exe_dir = os.path.dirname(os.path.abspath(shutil.which(kernel_argv[0]) or kernel_argv[0]))
    env = {
        "PATH": f"{exe_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(settings.threads)
    for name in settings.pass_env:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _working_copy(workdir: str, scratch: str) -> list[str]:
    """A size-limited scratch tmpfs at ``workdir``, with its files mounted read-only on top.

    Notebooks are left out: nbgrader writes the sanitized notebook, hidden tests included, into
    the working directory before it executes it.
    """
    args = _parents(workdir) + ["--perms", "1777", "--size", scratch, "--tmpfs", workdir]
    for entry in sorted(os.listdir(workdir)):
        if entry.endswith(".ipynb"):
            continue  # the notebooks being graded hold the hidden tests: not for the kernel
        path = os.path.join(workdir, entry)
        args += ["--ro-bind", path, path]
    return args




def sandbox_command(
    kernel_argv: Sequence[str],
    *,
    workdir: str,
    settings: SandboxSettings | None = None,
    uid: int | None = None,
    files: Sequence[tuple[int, str]] = (),
    info_fd: int | None = None,
) -> list[str]:
    """The ``bwrap`` command line that runs ``kernel_argv`` in the sandbox.

    ``workdir`` is the submission's working copy (the kernel's current directory).  ``uid`` is
    the unprivileged user the kernel becomes when the grader is root (``None``: keep the
    caller's user; bubblewrap then creates a user namespace).  ``files`` are ``(fd, path)``
    pairs copied into the sandbox's ``/tmp`` (the connection file, matplotlib's font cache);
    ``info_fd`` receives bubblewrap's JSON with the sandbox's ``child-pid``.  No host path is
    writable: the kernel's sockets live in its private ``/tmp`` and the grader reaches them
    through ``/proc/<child-pid>/root``.
    """
    settings = settings or SandboxSettings()
    workdir = os.path.abspath(workdir)
    scratch = str(settings.scratch_mb * 1024 * 1024)
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if uid is None:
        args += ["--unshare-user"]
    else:  # privileged bubblewrap: keep just what the bootstrap needs to drop to `uid`
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    args += _system_binds()
    args += ["--proc", "/proc", "--dev", "/dev"]
    # The private /tmp and /dev/shm come before the read-only binds, so that an environment or
    # a checkout that lives under /tmp (a CI clone, pytest's tmp_path) stays visible on top.
    for folder in ("/tmp", "/dev/shm"):  # /dev/shm: multiprocessing's semaphores, torch's tensors
        args += ["--perms", "1777", "--size", scratch, "--tmpfs", folder]
    binds = _read_only_binds(settings, kernel_argv, workdir)
    for path in binds:
        args += _parents(path) + ["--ro-bind", path, path]
    # the redacted packages, on top of whatever bound path holds the originals
    for where, replacement in _replacements(settings):
        args += _parents(where) + ["--ro-bind", replacement, where]
    # mask hidden paths that are still visible (e.g. a course kept inside the environment)
    for path in settings.hidden_paths:
        real = os.path.realpath(path)
        if any(_is_within(real, b) for b in binds):
            args += ["--tmpfs", real]
    for folder in (INNER_DIR, "/tmp/matplotlib", "/tmp/.ipython", os.path.dirname(
            os.path.dirname(STARTUP_FILE))):
        args += ["--perms", "0777", "--dir", folder]
    args += ["--perms", "0755", "--dir", os.path.dirname(STARTUP_FILE)]
    for fd, path in files:
        args += ["--perms", "0644", "--file", str(fd), path]
    args += _working_copy(workdir, scratch)
    args += ["--chdir", workdir, "--clearenv"]
    for name, value in _environment(settings, kernel_argv).items():
        args += ["--setenv", name, value]
    bootstrap = json.dumps({"rlimits": settings.rlimits(), "uid": uid})
    args += [sys.executable, "-I", "-S", "-c", _source("bootstrap.py"), bootstrap, *kernel_argv]
    return args


@functools.cache
def bwrap_available() -> tuple[bool, str]:
    """Whether bubblewrap can start a sandbox here, and if not, why (cached)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return False, "bubblewrap is not installed (apt-get install bubblewrap)"
    probe = [exe, "--die-with-parent", "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/",
             "--proc", "/proc", "--dev", "/dev"]
    probe += ["--cap-add", "CAP_SETUID"] if os.geteuid() == 0 else ["--unshare-user"]
    try:
        result = subprocess.run(probe + ["true"], capture_output=True, text=True, timeout=30,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"bubblewrap did not run: {err}"
    if result.returncode != 0:
        return False, (f"bubblewrap cannot create namespaces here ({result.stderr.strip()}); "
                       "on Ubuntu >= 23.10 try `sysctl kernel.apparmor_restrict_unprivileged_"
                       "userns=0`, in a container run it with user namespaces allowed")
    return True, "ok"
