"""The run folder: what a training run keeps on disk, and the rules for reusing a folder.

=================  ====================================================================
file               contents
=================  ====================================================================
``last.pt``        the newest checkpoint (everything needed to resume)
``previous.pt``    the checkpoint before it (the fallback if ``last.pt`` is damaged)
``best.pt``        the checkpoint with the best validation bits/dim so far
``metrics.csv``    training, validation and (one) test rows
``config.yaml``    the loop settings (and the recipe, for runs started by the CLI)
``split.json``     the validation split: seed, fraction and held-out indices
``test.json``      the test NLL and bits/dim, evaluated once at the end on ``best.pt``
``samples/``       sample grids (PNG)
=================  ====================================================================

Rules: a folder that already holds results is never reused silently.  ``resume`` continues it;
``overwrite`` removes flowlab's own files listed above (never anything else) and says which;
otherwise :class:`RunDirExistsError`.  A folder that cannot be written raises
:class:`RunFolderError` before any training; if writing fails later (a full disk), the trainer
saves its state to a fallback folder (:func:`rescue_dir`) and says where.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "RunFolder", "RunDirExistsError", "RunFolderError", "rescue_dir", "rescue",
    "resume_checkpoint",
]  # fmt: skip

LEGACY_CHECKPOINT = "checkpoint.pt"  # the single checkpoint of flowlab before best/last


class RunDirExistsError(FileExistsError):
    """The run folder already holds results and neither resume nor overwrite was asked for."""


class RunFolderError(OSError):
    """A file of the run (or an output file) cannot be written; the message says what was kept
    and where.

    Attributes:
        rescued: the fallback checkpoint the state was saved to (read back), or ``None``.
    """

    rescued: Path | None = None


def folder_error(message: str, cause: OSError) -> RunFolderError:
    """A :class:`RunFolderError` whose text is ``message`` and whose ``errno`` is the cause's."""
    err = RunFolderError(message)
    err.errno = cause.errno
    return err


def describe_os_error(err: OSError) -> str:
    """A short reason for a failed write, with the usual fix."""
    if err.errno == errno.ENOSPC:
        return "the disk is full (free some space)"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (choose a folder you can write to)"
    if err.errno == errno.EROFS:
        return "the file system is read-only (choose another folder)"
    if err.errno == errno.EFBIG:
        return "the file is larger than this process may write (see 'ulimit -f')"
    return f"{err.strerror or err}"


def rescue_dir() -> Path:
    """A fallback folder for results that could not be written where asked (in the system's
    temporary folder, one per process)."""
    return Path(tempfile.gettempdir()) / f"flowlab-rescue-{os.getpid()}"


def rescue(write: Callable[[Path], Any], name: str,
           check: Callable[[Path], Any] | None = None) -> Path:
    """The one fallback write of flowlab: ``write(path)`` to ``rescue_dir() / name``, then
    ``check(path)`` (reading it back, e.g. :func:`~flowlab.train.checkpoint.load_checkpoint`),
    so that a message names the fallback only once it is known to be readable.

    Used by the trainer (the state, when a run file cannot be written) and by ``flowlab
    sample`` (the samples, when ``--out`` cannot be written).

    Raises:
        OSError: the fallback could not be written or read back (a ``RunFolderError`` whose
            text names the fallback path and the reason).
    """
    path = rescue_dir() / name
    try:
        write(path)
        if check is not None:
            check(path)
    except Exception as err:  # noqa: BLE001 - reported with the path and the reason
        from .checkpoint import as_os_error

        cause = as_os_error(err)
        reason = describe_os_error(cause) if isinstance(cause, OSError) else str(err)
        failed = RunFolderError(f"{str(path)!r}: {reason}")
        failed.errno = getattr(cause, "errno", None)
        raise failed from err
    return path


def resume_checkpoint(
    run_dir: str | Path | None, resume_from: str | Path | None = None,
    map_location: Any = "cpu",
) -> tuple[Path, dict[str, Any]]:
    """The checkpoint a resumed run continues from, located, checked and read: the one place
    that decides it (``flowlab train --resume`` reads its settings from it, the trainer its
    state).

    ``resume_from`` if given, else ``<run_dir>/last.pt`` (or the ``checkpoint.pt`` of a
    folder from before best/last).

    Raises:
        ValueError: no ``run_dir`` (a resumed run writes there).
        FileNotFoundError: the file does not exist; the message names ``previous.pt`` only if
            it loads.
        flowlab.train.checkpoint.CheckpointError: the file is damaged; the message names a
            checkpoint beside it that loads, if any.
    """
    from .checkpoint import load_checkpoint, readable_checkpoint

    if run_dir is None:
        raise ValueError("--resume needs --run-dir (run_dir), the folder of the run to continue")
    folder = RunFolder(run_dir)
    path = Path(resume_from) if resume_from else folder.resume_checkpoint()
    if not path.is_file():
        hint = (f"; the previous checkpoint {str(folder.previous)!r} is kept: pass "
                f"--resume-from {folder.previous}"
                if not resume_from and readable_checkpoint(folder.previous) else "")
        raise FileNotFoundError(
            f"nothing to resume: {str(path)!r} does not exist (drop --resume to start a new "
            f"run there){hint}")
    return path, load_checkpoint(path, map_location=map_location)


class RunFolder:
    """Paths and lifecycle rules of one run folder (see the module docstring)."""

    FILES = ("last.pt", "previous.pt", "best.pt", "metrics.csv", "config.yaml", "split.json",
             "test.json", LEGACY_CHECKPOINT)
    FOLDERS = ("samples", "tb")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.last = self.path / "last.pt"
        self.previous = self.path / "previous.pt"
        self.best = self.path / "best.pt"
        self.metrics = self.path / "metrics.csv"
        self.config = self.path / "config.yaml"
        self.split = self.path / "split.json"
        self.test = self.path / "test.json"
        self.samples = self.path / "samples"

    def results(self) -> list[str]:
        """The names of flowlab's files and non-empty folders already in the folder."""
        found = [n for n in self.FILES if (self.path / n).exists()]
        found += [f"{n}/" for n in self.FOLDERS
                  if (self.path / n).is_dir() and any((self.path / n).iterdir())]
        return found

    def resume_checkpoint(self) -> Path:
        """The checkpoint a resume reads: ``last.pt`` (or a pre-best/last ``checkpoint.pt``)."""
        if not self.last.exists() and (self.path / LEGACY_CHECKPOINT).is_file():
            return self.path / LEGACY_CHECKPOINT
        return self.last

    def check_new(self, overwrite: bool) -> list[str]:
        """Rules for a new run here; returns the names removed by ``overwrite`` (also warned)."""
        found = self.results()
        if not found:
            return []
        if not overwrite:
            raise RunDirExistsError(
                f"the run folder {str(self.path)!r} already holds results "
                f"({', '.join(found)}). Pass --resume to continue that run, --overwrite to "
                "delete these results and start over, or choose another --run-dir."
            )
        return found

    def remove(self, names: list[str]) -> None:
        for name in names:
            target = self.path / name.rstrip("/")
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        if names:
            warnings.warn(
                f"overwrite: removed {', '.join(names)} from {str(self.path)!r}", stacklevel=3
            )

    def ensure_writable(self) -> None:
        """Create the folder and write a probe file; :class:`RunFolderError` if that fails."""
        probe = self.path / ".flowlab-write-test"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as err:
            raise folder_error(
                f"cannot write the run folder {str(self.path)!r}: {describe_os_error(err)}. "
                "Nothing was trained; choose another --run-dir.", err
            ) from err
