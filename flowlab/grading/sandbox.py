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

    from flowlab.grading.sandbox import configure
    configure(c)                       # on where bubblewrap works, a warning where it does not

:class:`SandboxKernelManager` wraps whatever kernel the notebook asks for (its kernel spec's
``argv``) in the launcher below (``python sandbox.py --settings JSON -- argv...``), which builds
the ``bwrap`` command line and replaces itself with it.  The launcher uses the standard library
only, so starting a sandboxed kernel costs one extra, short Python start-up.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "SandboxKernelManager",
    "SandboxSettings",
    "bwrap_available",
    "configure",
    "sandbox_command",
]

#: Files of ``/etc`` a Python kernel may need (dynamic linker, locale, time zone, user names).
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "alternatives",
    "passwd", "group", "nsswitch.conf", "fonts", "mime.types", "matplotlibrc",
)
#: Top-level directories that hold the system's programs and libraries.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: File in the kernel manager's runtime directory where the launcher reports the sandbox pid.
_CHILD_FILE = "sandbox.json"
#: First user id of the range the kernel runs under when the grader is root.
SANDBOX_UID_BASE = 2_000_000_000


@dataclass
class SandboxSettings:
    r"""What the sandbox allows one kernel.

    Limits are per kernel (one notebook being graded).  ``memory_mb`` bounds the address space
    (``RLIMIT_AS``: a runaway allocation raises ``MemoryError`` in the cell); ``cpu_seconds`` the
    CPU time of the kernel, and of each process it starts (``RLIMIT_CPU``: past it the process
    is killed); ``processes`` the processes *and threads* (``RLIMIT_NPROC``, counted inside the
    sandbox only; the kernel itself uses about a dozen threads);
    ``open_files`` the descriptors (``RLIMIT_NOFILE``); ``file_size_mb`` one file's size
    (``RLIMIT_FSIZE``); ``scratch_mb`` the size of each writable ``tmpfs`` (the working copy,
    ``/tmp`` and ``/dev/shm``), so at most ``3 * scratch_mb`` can be written in total.
    """

    memory_mb: int = 4096
    cpu_seconds: int = 900
    processes: int = 256
    open_files: int = 512
    file_size_mb: int = 256
    scratch_mb: int = 512
    threads: int = 1
    pass_env: list[str] = field(default_factory=lambda: ["NBGRADER_EXECUTION"])
    packages: list[str] = field(default_factory=lambda: ["flowlab"])
    extra_ro_paths: list[str] = field(default_factory=list)
    hidden_paths: list[str] = field(default_factory=list)

    def rlimits(self) -> list[tuple[str, int, int]]:
        """``(name, soft, hard)`` for :func:`resource.setrlimit`, applied inside the sandbox."""
        mib = 1024 * 1024
        return [
            ("RLIMIT_AS", self.memory_mb * mib, self.memory_mb * mib),
            ("RLIMIT_CPU", self.cpu_seconds, self.cpu_seconds + 5),
            ("RLIMIT_NPROC", self.processes, self.processes),
            ("RLIMIT_NOFILE", self.open_files, self.open_files),
            ("RLIMIT_FSIZE", self.file_size_mb * mib, self.file_size_mb * mib),
            ("RLIMIT_CORE", 0, 0),
        ]


# The first program inside the sandbox: set the limits (after the user namespace exists, so
# that RLIMIT_NPROC counts this sandbox's processes only), become an unprivileged user when the
# sandbox was started by root, then become the kernel.
_BOOTSTRAP = r"""
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
for name, soft, hard in cfg["rlimits"]:
    resource.setrlimit(getattr(resource, name), (soft, hard))
uid = cfg["uid"]
if uid is not None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
os.execvp(sys.argv[2], sys.argv[2:])
"""

#: Where an IPython kernel in the sandbox finds :data:`_CELL_GUARD` (``HOME`` is ``/tmp``).
STARTUP_FILE = "/tmp/.ipython/profile_default/startup/00-flowlab-cell-guard.py"

# An IPython start-up file, run by every sandboxed IPython kernel before the first cell (other
# kernels ignore it).  After a cell that leaves the sandbox (almost) out of processes, it ends
# every process but the kernel: a fork bomb uses up RLIMIT_NPROC, which the kernel shares with
# its children (threads count), and its copies keep forking and writing to the kernel's stderr
# pipe, which would put an error into every later cell.  A failing cell does this before its
# traceback is formatted (with the bomb still running, that takes seconds).  Background
# processes that leave room (a multiprocessing pool kept for the next cell) are left alone.
# Cells that leave no process behind pay for one listdir of /proc.
_CELL_GUARD = r"""
def _flowlab_install_cell_guard():
    import fcntl, os, resource, signal, struct, sys, termios, time

    kernel = os.getpid()

    def others():  # 1 is the sandbox's init; /proc shows this sandbox's processes only
        return [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, kernel)]

    def crowded():  # leftovers use up the process limit (threads count) that the kernel needs
        limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
        if limit == resource.RLIM_INFINITY or not others():
            return False
        tasks = 0
        for pid in os.listdir("/proc"):
            try:
                tasks += len(os.listdir(f"/proc/{pid}/task")) if pid.isdigit() else 0
            except OSError:
                pass  # it has just ended
        return limit - tasks < max(8, limit // 8)

    def unread(stream):
        fid = getattr(stream, "_fid", None)  # ipykernel's pipe that captures the fd
        if fid is None:
            return 0
        try:
            return struct.unpack("i", fcntl.ioctl(fid, termios.FIONREAD, b"\0" * 4))[0]
        except OSError:
            return 0

    def end(deadline):
        while others() and time.monotonic() < deadline:
            try:
                os.kill(-1, signal.SIGKILL)  # all processes we may signal, except ourselves
            except OSError:
                pass
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass  # our own dead children; init reaps the others
            except ChildProcessError:
                pass
            time.sleep(0.002)
        # what they wrote before they died belongs to this cell: let ipykernel forward it now
        while (unread(sys.stdout) or unread(sys.stderr)) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        sys.stdout.flush()
        sys.stderr.flush()

    def end_leftover_processes(result=None):
        if os.getpid() != kernel:
            os._exit(0)  # a forked copy of the kernel at the end of the cell: nothing left to do
        if not crowded():
            return  # processes it started in the background keep running
        deadline = time.monotonic() + 10
        while True:
            try:
                return end(deadline)
            except KeyboardInterrupt:
                pass  # a timeout's interrupt for the cell that has just ended: finish first

    shell = get_ipython()
    show_traceback = shell.showtraceback

    def showtraceback(*args, **kwargs):  # a failed cell: end its processes before the slow part
        end_leftover_processes()
        return show_traceback(*args, **kwargs)

    shell.showtraceback = showtraceback
    shell.events.register("post_run_cell", end_leftover_processes)


_flowlab_install_cell_guard()
del _flowlab_install_cell_guard
"""


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
    binds: list[str] = []
    for path in candidates:
        for variant in {os.path.abspath(path), os.path.realpath(path)}:
            if not os.path.exists(variant) or variant == "/":
                continue
            if any(_is_within(g, variant) for g in guarded):
                continue  # an ancestor of the course: never mount it
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


#: Where the kernel finds its connection file and creates its sockets, inside the sandbox.
INNER_DIR = "/tmp/.kernel"


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
    args += [sys.executable, "-I", "-S", "-c", _BOOTSTRAP, bootstrap, *kernel_argv]
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


# --------------------------------------------------------------------------- the launcher
def _font_caches() -> list[str]:
    """The grader's matplotlib font cache, copied in so that no kernel rebuilds it."""
    source = os.environ.get("MPLCONFIGDIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "matplotlib")
    if not os.path.isdir(source):
        return []
    return [os.path.join(source, n) for n in os.listdir(source)
            if n.startswith("fontlist") and n.endswith(".json")]


def _data_fd(data: bytes) -> int:
    """A readable descriptor with ``data`` (a pipe; the payload is small)."""
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    return read


def _main(argv: Sequence[str]) -> int:
    """``sandbox.py --settings JSON -- KERNEL ARGV...``: run the kernel in bubblewrap.

    The launcher stays alive as bubblewrap's parent (when the grader kills it, the sandbox
    dies with it), hands the kernel a copy of the connection file that points at sockets in the
    sandbox's ``/tmp``, and reports the sandbox's process id to the kernel manager.
    """
    if len(argv) < 4 or argv[0] != "--settings" or argv[2] != "--":
        raise SystemExit("usage: sandbox.py --settings JSON -- KERNEL_ARGV...")
    raw = json.loads(argv[1])
    runtime_dir = raw.pop("runtime_dir")
    settings = SandboxSettings(**raw)
    outer_file = os.path.realpath(os.path.join(runtime_dir, "kernel.json"))
    with open(outer_file) as handle:
        connection = json.load(handle)
    connection["ip"] = f"{INNER_DIR}/kernel"
    inner_file = f"{INNER_DIR}/connection.json"
    kernel_argv = [inner_file if a == outer_file else a for a in argv[3:]]
    files = [(_data_fd(json.dumps(connection).encode()), inner_file),
             (_data_fd(_CELL_GUARD.encode()), STARTUP_FILE)]
    for cache in _font_caches():
        files.append((os.open(cache, os.O_RDONLY), f"/tmp/matplotlib/{os.path.basename(cache)}"))
    info_read, info_write = os.pipe()
    uid = SANDBOX_UID_BASE + os.getpid() if os.geteuid() == 0 else None
    cmd = sandbox_command(kernel_argv, workdir=os.getcwd(), settings=settings, uid=uid,
                          files=files, info_fd=info_write)
    fds = [fd for fd, _ in files] + [info_write]
    with open(os.devnull, "wb") as quiet:  # the kernel's own console chatter
        proc = subprocess.Popen(cmd, pass_fds=fds, stdout=quiet, stderr=quiet)
    for fd in fds:
        os.close(fd)
    with os.fdopen(info_read) as info:
        text = info.read()
    if text.strip():
        report = os.path.join(runtime_dir, _CHILD_FILE)
        with open(report + ".part", "w") as handle:
            handle.write(json.dumps(json.loads(text)))
        os.replace(report + ".part", report)
    return proc.wait()


# Run as a script (the launcher), the file ends here: the Jupyter part below is for the grader's
# process only, and importing jupyter_client would cost every kernel start about half a second.
if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts go to the kernel, not here
    sys.exit(_main(sys.argv[1:]))


# --------------------------------------------------------------------------- the kernel manager
from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer, List, Unicode, default


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager that starts its kernel inside the bubblewrap sandbox.

    The kernel spec of the notebook is used as it is; its command line is handed to the
    launcher (this file run as a script), the transport is switched to Unix-domain sockets in a
    private directory (a kernel without network cannot listen on the grader's loopback) and
    interrupts go through the control channel (a signal would reach bubblewrap, not the kernel).
    Every limit is a configurable trait: ``c.SandboxKernelManager.memory_mb = 2048``.
    """

    memory_mb = Integer(SandboxSettings.memory_mb, help="RLIMIT_AS of the kernel, MiB.").tag(config=True)
    cpu_seconds = Integer(SandboxSettings.cpu_seconds, help="RLIMIT_CPU of the kernel, s.").tag(config=True)
    processes = Integer(SandboxSettings.processes, help="RLIMIT_NPROC (processes and threads).").tag(config=True)
    open_files = Integer(SandboxSettings.open_files, help="RLIMIT_NOFILE.").tag(config=True)
    file_size_mb = Integer(SandboxSettings.file_size_mb, help="RLIMIT_FSIZE, MiB.").tag(config=True)
    scratch_mb = Integer(SandboxSettings.scratch_mb, help="Size of each writable tmpfs, MiB.").tag(config=True)
    threads = Integer(SandboxSettings.threads, help="OMP/MKL/OpenBLAS threads.").tag(config=True)
    pass_env = List(Unicode(), ["NBGRADER_EXECUTION"], help="Environment variables passed in.").tag(config=True)
    packages = List(Unicode(), ["flowlab"], help="Packages mounted read-only.").tag(config=True)
    extra_ro_paths = List(Unicode(), [], help="More host paths mounted read-only.").tag(config=True)
    hidden_paths = List(Unicode(), [], help="Paths never visible (the course root).").tag(config=True)

    @default("transport")
    def _transport_default(self) -> str:
        return "ipc"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transport = "ipc"
        self.runtime_dir = tempfile.mkdtemp(prefix="flowlab-sandbox-")
        self.connection_file = os.path.join(self.runtime_dir, "kernel.json")
        self.ip = os.path.join(self.runtime_dir, "kernel")

    def settings(self) -> SandboxSettings:
        """The traits of this manager as :class:`SandboxSettings`."""
        names = SandboxSettings.__dataclass_fields__
        return SandboxSettings(**{name: getattr(self, name) for name in names})

    @property
    def kernel_spec(self):  # type: ignore[override]
        spec = super().kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"
        return spec

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = super().format_kernel_cmd(extra_arguments)
        settings = asdict(self.settings())
        settings["runtime_dir"] = self.runtime_dir
        return [sys.executable, "-I", os.path.abspath(__file__), "--settings",
                json.dumps(settings), "--", *argv]

    async def _async_pre_start_kernel(self, **kw: Any):
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        for name in os.listdir(self.runtime_dir):  # a restart: forget the old sandbox
            if name == _CHILD_FILE:
                os.remove(os.path.join(self.runtime_dir, name))
        self.ip = os.path.join(self.runtime_dir, "kernel")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        # the launcher reports the sandbox's process id; its sockets are under /proc/<pid>/root
        path = os.path.join(self.runtime_dir, _CHILD_FILE)
        deadline = asyncio.get_running_loop().time() + 60
        while not os.path.exists(path):
            exited = await self.provisioner.poll() is not None
            if exited or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the sandboxed kernel did not start; run `python -m "
                                   "flowlab.grading sandbox-check` to see why")
            await asyncio.sleep(0.01)
        with open(path) as handle:  # noqa: ASYNC230 - a few bytes, written before it appeared
            pid = json.load(handle)["child-pid"]
        self.ip = f"/proc/{pid}/root{INNER_DIR}/kernel"

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def configure(c: Any, enabled: bool | None = None, **limits: Any) -> bool:
    """Make nbgrader's ``Execute`` (and its subclasses) run kernels in the sandbox.

    Call it from ``nbgrader_config.py`` with the config object ``c``.  ``enabled=None`` (the
    default) switches the sandbox on where bubblewrap works and otherwise warns and leaves the
    plain kernel; ``enabled=True`` raises instead of falling back; ``enabled=False`` or the
    environment variable ``FLOWLAB_SANDBOX=0`` switches it off.  ``limits`` are traits of
    :class:`SandboxKernelManager` (``memory_mb=2048``, ``cpu_seconds=300`` ...).  The course
    root (``c.CourseDirectory.root`` or the current directory) is added to ``hidden_paths``.
    Returns whether the sandbox is on.
    """
    if enabled is None and os.environ.get("FLOWLAB_SANDBOX", "").lower() in ("0", "false", "no"):
        enabled = False
    if enabled is False:
        return False
    ok, why = bwrap_available()
    if not ok:
        if enabled:
            raise RuntimeError(f"the grading sandbox was required but cannot start: {why}")
        warnings.warn(
            f"flowlab: autograding WITHOUT a sandbox — {why}. Submissions run with your "
            "permissions and can read the course directory (see book/sandbox.md).",
            RuntimeWarning, stacklevel=2,
        )
        print(f"[flowlab] WARNING: grading sandbox off: {why}", file=sys.stderr)
        return False
    c.Execute.kernel_manager_class = SandboxKernelManager
    root = c.CourseDirectory.root if "root" in c.CourseDirectory else os.getcwd()
    c.SandboxKernelManager.hidden_paths = [os.path.abspath(root)]
    for name, value in limits.items():
        if not SandboxKernelManager.class_traits(config=True).get(name):
            raise TypeError(f"configure() got an unknown sandbox setting {name!r}; expected one "
                            f"of {sorted(SandboxKernelManager.class_traits(config=True))}")
        setattr(c.SandboxKernelManager, name, value)
    return True
