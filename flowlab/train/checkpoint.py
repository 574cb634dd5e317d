"""Checkpoints that survive a kill at any moment, with the previous one kept beside the last.

:func:`save_checkpoint` never leaves a half-written file under the checkpoint's name: it
writes to a temporary file in the same folder, flushes it to disk (``fsync``) and only then
renames it over the old one with :func:`os.replace`, which is atomic on POSIX and Windows.  A
process killed mid-write leaves the previous checkpoint untouched (and at worst a stray
``*.tmp`` file, which the next save removes).  With ``keep_previous`` the file being replaced
is first renamed to that name, so a run folder always holds the last *two* checkpoints
(``last.pt`` and ``previous.pt``): if one is damaged (a disk error, a copy cut short), the
other one still resumes the run, and :func:`load_checkpoint`'s error says so.

The random states (:func:`rng_state`, :func:`set_rng_state`) live in :mod:`flowlab.train.rng`
and are re-exported here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from .rng import rng_state, set_rng_state

__all__ = [
    "save_checkpoint", "load_checkpoint", "CheckpointError", "CHECKPOINT_NAMES", "atomic_save",
    "as_os_error", "readable_checkpoint", "readable_alternative",
    "rng_state", "set_rng_state",
]  # fmt: skip

#: The checkpoint files of a run folder, in the order a fallback tries them.
CHECKPOINT_NAMES = ("last.pt", "previous.pt", "best.pt")


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be read (damaged, or not a flowlab checkpoint)."""


def save_checkpoint(
    state: dict[str, Any], path: str | Path, keep_previous: str | Path | None = None
) -> Path:
    """Write ``state`` with :func:`torch.save` to ``path`` atomically; returns the path.

    Args:
        state: a picklable ``dict``.
        path: where to write it.
        keep_previous: if given and ``path`` exists, the old file is renamed to this name
            (after the new one is safely on disk) instead of being replaced.

    Raises:
        OSError: the folder cannot be written (read-only, disk full, ...); nothing under
            ``path`` or ``keep_previous`` has changed then.
    """
    return atomic_save(state, path, keep_previous)


def atomic_save(
    obj: Any, path: str | Path, keep_previous: str | Path | None = None
) -> Path:
    """:func:`torch.save` ``obj`` to ``path`` atomically (see :func:`save_checkpoint`).

    The file gets the permissions of any new file (``0o666`` less the umask, e.g. ``0o644``),
    not the ``0o600`` of a temporary file.  A failed write raises ``OSError`` -- also where
    :func:`torch.save` reports a full disk or a file-size limit as a ``RuntimeError``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a process killed while writing
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as err:
                raise as_os_error(err) from err
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            _keep_as(path, Path(keep_previous))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_os_error(err: BaseException) -> BaseException:
    """The ``OSError`` behind a failed write: ``err`` itself, the ``OSError`` it was raised
    from (:func:`torch.save` turns a Python file's ``OSError`` into a ``RuntimeError``), or,
    for a ``RuntimeError`` of torch's file writer, an ``OSError`` with its text; otherwise
    ``err`` unchanged."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(err)
    if isinstance(err, RuntimeError) and any(
        marker in text for marker in ("inline_container", "PytorchStreamWriter", "file write",
                                      "iostream error")
    ):
        return OSError(f"torch.save could not write the file ({text.strip()})")
    return err


def _keep_as(path: Path, previous: Path) -> None:
    """Give the current checkpoint the name ``previous`` too (a hard link, or a copy where
    links are not supported), so that ``path`` itself never goes missing, even for a moment."""
    tmp = previous.with_name(f".{previous.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    os.replace(tmp, previous)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alternatives(path: Path) -> list[Path]:
    """The other checkpoint files beside ``path`` (not yet known to be readable)."""
    return [path.parent / n for n in CHECKPOINT_NAMES
            if n != path.name and (path.parent / n).is_file()]


def readable_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` loads as a flowlab checkpoint (it is read whole: advice that points
    to a file checks it first)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - any failure means "not readable"
        return False
    return isinstance(state, dict) and "model" in state


def readable_alternative(path: str | Path) -> Path | None:
    """The first checkpoint beside ``path`` (``last.pt``, ``previous.pt``, ``best.pt``) that
    loads, or ``None``."""
    return next((p for p in _alternatives(Path(path)) if readable_checkpoint(p)), None)


def _what_to_do(path: Path) -> str:
    others = _alternatives(path)
    other = readable_alternative(path)
    if other is None:
        damaged = (f" ({', '.join(repr(p.name) for p in others)} beside it "
                   f"{'is' if len(others) == 1 else 'are'} damaged too)" if others else "")
        return (f"No readable checkpoint is kept beside it{damaged}: the run has to start over "
                "(--overwrite).")
    return (
        f"The checkpoint kept beside it is {str(other)!r}: continue the run from it with "
        f"'flowlab train --run-dir {path.parent} --resume-from {other}', or sample/evaluate "
        f"it with '--checkpoint {other}' (in Python: load_checkpoint({str(other)!r}))."
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: there is no checkpoint at ``path`` (the message names any other
            checkpoint kept in the same folder).
        CheckpointError: the file exists but is not a readable checkpoint (a ``ValueError``;
            the message says which other checkpoint to fall back to).
    """
    path = Path(path)
    if not path.is_file():
        extra = f" {_what_to_do(path)}" if _alternatives(path) else ""
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}.{extra}")
    try:
        # The checkpoint holds NumPy and Python RNG states next to tensors, so it is not a
        # weights-only file: load only checkpoints you wrote yourself.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the path and what to do
        raise CheckpointError(
            f"{str(path)!r} is not a readable flowlab checkpoint: it is damaged or was cut "
            f"short ({type(err).__name__}: {err}). {_what_to_do(path)}"
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"{str(path)!r} is not a flowlab checkpoint (no 'model' entry). {_what_to_do(path)}"
        )
    return state
