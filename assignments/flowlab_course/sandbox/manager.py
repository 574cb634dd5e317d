"""The Jupyter side of the sandbox: a kernel manager that starts kernels through the launcher,
and :func:`configure`, which switches it on for nbgrader."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import asdict
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import Dict, Integer, List, Unicode, default

from .command import bwrap_available
from .settings import CHILD_FILE, INNER_DIR, SandboxSettings

__all__ = ["SandboxKernelManager", "configure"]


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager that starts its kernel inside the bubblewrap sandbox.

    The kernel spec of the notebook is used as it is; its command line is handed to the
    launcher (:mod:`flowlab_course.sandbox.launcher`), the transport is switched to Unix-domain sockets in a
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
    replace_packages = Dict(
        {}, help="{package: directory} mounted in the package's place (set per notebook by "
        "GradingExecute: the redacted flowlab).")

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
        return [sys.executable, "-I", "-m", "flowlab_course.sandbox.launcher", "--settings",
                json.dumps(settings), "--", *argv]

    async def _async_pre_start_kernel(self, **kw: Any):
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        for name in os.listdir(self.runtime_dir):  # a restart: forget the old sandbox
            if name == CHILD_FILE:
                os.remove(os.path.join(self.runtime_dir, name))
        self.ip = os.path.join(self.runtime_dir, "kernel")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await super()._async_launch_kernel(kernel_cmd, **kw)
        # the launcher reports the sandbox's process id; its sockets are under /proc/<pid>/root
        path = os.path.join(self.runtime_dir, CHILD_FILE)
        deadline = asyncio.get_running_loop().time() + 60
        while not os.path.exists(path):
            exited = await self.provisioner.poll() is not None
            if exited or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the sandboxed kernel did not start; run `python -m "
                                   "flowlab_course sandbox-check` to see why")
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
