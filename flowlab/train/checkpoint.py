"""Checkpoints that survive a kill at any moment, and the random state needed to resume.

:func:`save_checkpoint` never leaves a half-written file under the checkpoint's name: it
writes to a temporary file in the same folder, flushes it to disk (``fsync``) and only then
renames it over the old one with :func:`os.replace`, which is atomic on POSIX and Windows.  A
process killed mid-write leaves the previous checkpoint untouched (and at worst a stray
``*.tmp`` file, which the next save removes).

:func:`rng_state` / :func:`set_rng_state` capture every random-number generator a training
step may draw from (Python's ``random``, NumPy, PyTorch on the CPU and on every CUDA device),
so that a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` with :func:`torch.save` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a process killed while writing
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: there is no checkpoint at ``path``.
        ValueError: the file exists but is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        # The checkpoint holds NumPy and Python RNG states next to tensors, so it is not a
        # weights-only file: load only checkpoints you wrote yourself.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the path and a hint
        raise ValueError(
            f"{str(path)!r} is not a readable flowlab checkpoint ({type(err).__name__}: {err})."
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{str(path)!r} is not a flowlab checkpoint (no 'model' entry)")
    return state


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and PyTorch's (CPU and all CUDA) generators."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by :func:`rng_state` (CUDA states only if CUDA is present)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
