"""What the sandbox allows one kernel, and where things live inside it (standard library only:
the launcher imports this module before any kernel starts)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SandboxSettings", "ETC_FILES", "SYSTEM_DIRS", "SANDBOX_UID_BASE", "INNER_DIR",
           "STARTUP_FILE", "CHILD_FILE"]

#: Files of ``/etc`` a Python kernel may need (dynamic linker, locale, time zone, user names).
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "alternatives",
    "passwd", "group", "nsswitch.conf", "fonts", "mime.types", "matplotlibrc",
)
#: Top-level directories that hold the system's programs and libraries.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: File in the kernel manager's runtime directory where the launcher reports the sandbox pid.
CHILD_FILE = "sandbox.json"
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
    ``replace_packages`` maps a package to a directory the kernel sees in its place (the grading
    kernel's flowlab without the graded pieces).
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
    #: ``{package name: directory}``: mounted read-only *where the package is found* instead of
    #: it (the redacted flowlab of :mod:`flowlab_course.trusted.redaction`).
    replace_packages: dict[str, str] = field(default_factory=dict)

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


#: Where the kernel finds its connection file and creates its sockets, inside the sandbox.
INNER_DIR = "/tmp/.kernel"
#: Where an IPython kernel in the sandbox finds the cell guard (``HOME`` is ``/tmp``).
STARTUP_FILE = "/tmp/.ipython/profile_default/startup/00-flowlab-cell-guard.py"
