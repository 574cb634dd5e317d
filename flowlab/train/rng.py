"""Random states: seed every generator at once, capture and restore them for a resume.

:func:`rng_state` / :func:`set_rng_state` capture every random-number generator a training
step may draw from (Python's ``random``, NumPy, PyTorch on the CPU and on every CUDA device),
so that a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch

__all__ = [
    "seed_everything", "rng_state", "set_rng_state", "isolated_rng", "gather_rng_states",
    "restore_rng_states",
]  # fmt: skip


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (CPU and every CUDA device).

    Args:
        seed: any integer (NumPy receives it modulo :math:`2^{32}`).

    Example:
        >>> seed_everything(3); a = torch.rand(2)
        >>> seed_everything(3); torch.equal(a, torch.rand(2))
        True
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


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


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with PyTorch seeded to ``seed``, then put back the random state it had
    (of the CPU and, for a CUDA ``device``, that device): evaluation and sampling draw the
    same noise every time and leave the training's random stream untouched.

    Example:
        >>> _ = torch.manual_seed(0); before = torch.get_rng_state()
        >>> with isolated_rng(7):
        ...     _ = torch.rand(3)
        >>> torch.equal(before, torch.get_rng_state())
        True
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def gather_rng_states(world_size: int = 1) -> list[dict[str, Any]]:
    """Every process's :func:`rng_state`, in rank order (a collective call when
    ``world_size > 1``: all processes of the group must call it)."""
    mine = rng_state()
    if world_size == 1:
        return [mine]
    import torch.distributed as dist

    everyone: list[Any] = [None] * world_size
    dist.all_gather_object(everyone, mine)
    return everyone


def restore_rng_states(states: list[dict[str, Any]], rank: int, world_size: int,
                       fallback_seed: int) -> str | None:
    """Restore this process's generators from a checkpoint's ``states`` (one per process of
    the run that wrote it).  Written by another number of processes, they cannot be matched:
    every generator is then seeded with ``fallback_seed`` and the returned message says that
    the continuation is not bit-for-bit identical (``None`` when restored)."""
    if len(states) == world_size:
        set_rng_state(states[rank])
        return None
    seed_everything(fallback_seed)
    return (f"the checkpoint was written by {len(states)} process(es), this run has "
            f"{world_size}: random streams restart from the seed, so the continuation is not "
            "bit-for-bit identical")
