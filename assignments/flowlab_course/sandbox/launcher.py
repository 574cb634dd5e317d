"""The launcher: the kernel manager's command for one sandboxed kernel.

``python -I -m flowlab_course.sandbox.launcher --settings JSON -- KERNEL_ARGV...`` stays alive as
bubblewrap's parent (when the grader kills it, the sandbox dies with it), hands the kernel a copy
of the connection file that points at sockets in the sandbox's ``/tmp``, copies the cell guard in
as an IPython start-up file and reports the sandbox's process id to the kernel manager.  It
imports the standard library only (no jupyter_client): one short Python start-up per kernel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from .command import _source, sandbox_command
from .settings import CHILD_FILE, INNER_DIR, SANDBOX_UID_BASE, STARTUP_FILE, SandboxSettings

__all__ = ["main"]


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this launcher when the grading process dies (even by SIGKILL).

    bubblewrap already dies with the launcher (``--die-with-parent``); without this, a grader
    killed mid-run (a lost cluster worker) would leave the launcher and its kernel behind.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux / no libc: the launcher then outlives it
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


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


def main(argv: Sequence[str]) -> int:
    """``launcher --settings JSON -- KERNEL ARGV...``: run the kernel in bubblewrap.

    The launcher stays alive as bubblewrap's parent (when the grader kills it, the sandbox
    dies with it), hands the kernel a copy of the connection file that points at sockets in the
    sandbox's ``/tmp``, and reports the sandbox's process id to the kernel manager.
    """
    if len(argv) < 4 or argv[0] != "--settings" or argv[2] != "--":
        raise SystemExit("usage: python -m flowlab_course.sandbox.launcher --settings JSON -- KERNEL_ARGV...")
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
             (_data_fd(_source("cell_guard.py").encode()), STARTUP_FILE)]
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
        report = os.path.join(runtime_dir, CHILD_FILE)
        with open(report + ".part", "w") as handle:
            handle.write(json.dumps(json.loads(text)))
        os.replace(report + ".part", report)
    return proc.wait()


if __name__ == "__main__":
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts go to the kernel, not here
    sys.exit(main(sys.argv[1:]))
