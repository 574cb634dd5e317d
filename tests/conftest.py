"""Fixtures shared by the whole test suite.

* every test starts from the same random state (``torch.manual_seed(0)``);
* matplotlib draws off-screen (``Agg``), so plotting tests need no display;
* ``float64``: run a test with float64 as torch's default dtype (restored afterwards);
* ``perturb``: randomise a module's parameters in place, so that a layer whose conditioner
  starts at zero (the identity) is tested as a non-trivial map;
* under pytest-xdist (``make test`` runs two workers on two cores) every test runs with one
  torch thread, so that the workers do not oversubscribe the machine; ``one_thread`` asks for
  the same in a plain run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def float64() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def perturb_parameters(module: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Add ``scale * N(0, 1)`` noise to every parameter of ``module`` (in place); return it."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.add_(scale * noise.to(dtype=p.dtype, device=p.device))
    return module


@pytest.fixture
def perturb() -> Callable[..., nn.Module]:
    return perturb_parameters


@pytest.fixture(autouse=True)
def _one_thread_per_xdist_worker(request: pytest.FixtureRequest) -> Iterator[None]:
    if not hasattr(request.config, "workerinput"):  # not an xdist worker
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for this test (restored afterwards).

    The suite runs as two xdist workers on two cores; a worker that also spawns one thread
    per core oversubscribes the machine and the numerically heavy tests run several times
    slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def bwrap() -> None:
    """The grading sandbox's tests need bubblewrap: fail (never skip) with the command to run."""
    from flowlab_course.sandbox import bwrap_available

    ok, why = bwrap_available()
    if not ok:
        pytest.fail(f"the sandbox tests need bubblewrap, which cannot run here: {why}. Install it "
                    "with `sudo apt-get install -y bubblewrap` (make test does this as root).",
                    pytrace=False)
