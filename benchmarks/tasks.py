r"""The density-estimation tasks of the comparison: data, split, metric, architecture.

Every contender trains on exactly the same batches (see ``run.py``: the models train in
lockstep, one shared batch per step), so a task only has to say where the data comes from and
how a mean negative log-likelihood becomes the reported number.

* 2-D toy sets (two moons, 8 Gaussians, checkerboard) from :mod:`flowlab.data.toy2d`: test NLL
  in nats; where the data's density is known in closed form, the NLL of the *true* density on
  the same test set is reported beside it (the gap is an estimate of the KL divergence).
* Flat 8x8 digits (64-d; MNIST-5k, 784-d, on request) from :mod:`flowlab.data.images`: test
  bits per dimension, and the same for flowlab's multi-scale image model.  With pixel levels
  :math:`x \in \{0, \dots, L-1\}^D` dequantized as :math:`y = (x + u)/L`,
  :math:`u \sim U(0,1)^D`, a density :math:`p(y)` on :math:`[0,1]^D` gives

  .. math:: \text{bits/dim} = \frac{-\log p(y) + D \log L}{D \log 2},

  an upper bound on the discrete model's code length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from peers import Contender, ModelSpec

__all__ = ["Task", "toy_task", "flat_image_task", "multiscale_task", "TOY_NAMES"]

TOY_NAMES = ("two_moons", "eight_gaussians", "checkerboard")


@dataclass
class Task:
    """One data set with its split, model architecture, training length and metric."""

    name: str
    spec: ModelSpec
    train: Tensor  # (n_train, features)
    test: Tensor  # (n_test, features)
    steps: int
    metric: str  # "NLL (nats)" or "bits/dim"
    to_metric: Callable[[float], float]  # mean test NLL (nats per sample) -> reported number
    reference: float | None = None  # the true density's test metric, where analytic
    fresh_batch: Callable[[Tensor, torch.Generator], Tensor] | None = None  # e.g. re-dequantize
    source: str = ""  # where the data came from
    notes: list[str] = field(default_factory=list)
    # Custom contenders (impls, kinds, seed) -> {label: Contender}; None: build from ``spec``.
    build_models: Callable[[list[str], list[str], int], dict[str, Contender]] | None = None

    def batch(self, size: int, generator: torch.Generator) -> Tensor:
        """A training batch drawn with ``generator`` (the same for every contender)."""
        idx = torch.randint(len(self.train), (size,), generator=generator)
        x = self.train[idx]
        return self.fresh_batch(x, generator) if self.fresh_batch is not None else x


# ------------------------------------------------------------------------------------ 2-D toys
def toy_task(
    name: str, steps: int, couplings: int = 8, n_train: int = 20_000, n_test: int = 10_000
) -> Task:
    """A 2-D toy set from :mod:`flowlab.data.toy2d` (train seed 0, test seed 1)."""
    from flowlab.data import toy2d

    train = toy2d.toy_dataset(name, n_train, seed=0).float()
    test = toy2d.toy_dataset(name, n_test, seed=1).float()
    reference = None
    try:
        reference = float(-toy2d.toy_log_prob(name, test.double()).mean())
    except (ValueError, NotImplementedError, KeyError):
        pass  # no closed-form density (e.g. two moons)
    # realnvp(2)'s architecture: 8 couplings, 2x64 MLPs, splines on [-4, 4].
    spec = ModelSpec(features=2, couplings=couplings, hidden=(64, 64), bins=8, bound=4.0)
    return Task(
        name=name,
        spec=spec,
        train=train,
        test=test,
        steps=steps,
        metric="NLL (nats)",
        to_metric=lambda nll: nll,
        reference=reference,
        source="flowlab.data.toy2d",
    )


# ------------------------------------------------------------------------------------ images
def _levels(name: str) -> tuple[Tensor, Tensor, int, tuple[int, int, int], str]:
    """Train and test images as float levels ``(N, C, H, W)``, the number of levels, the shape."""
    from flowlab.data import images

    loader = {"digits": images.load_digits, "mnist5k": images.load_mnist5k}[name]
    train, test = loader("train"), loader("test")
    source = f"flowlab.data.images ({train.name} {len(train)}, {test.name} {len(test)})"
    return train.float(), test.float(), train.num_levels, train.shape, source


def flat_image_task(
    name: str,
    steps: int,
    seed: int = 0,
    couplings: int = 8,
    hidden: tuple[int, ...] = (256, 256),
) -> Task:
    """Flat images (digits: 64-d), uniformly dequantized outside the model, in bits/dim.

    The test set is dequantized once with its own seed, so every contender sees the same
    :math:`y`; training batches are dequantized afresh from the shared generator.
    """
    train, test, levels, shape, source = _levels(name)
    dim = math.prod(shape)
    noise = torch.rand(test.shape, generator=torch.Generator().manual_seed(seed + 1))
    test_y = ((test + noise) / levels).reshape(len(test), dim)

    def dequantize(x: Tensor, generator: torch.Generator) -> Tensor:
        return (x + torch.rand(x.shape, generator=generator)) / levels

    def bits_per_dim(nll: float) -> float:
        return (nll + dim * math.log(levels)) / (dim * math.log(2.0))

    spec = ModelSpec(features=dim, couplings=couplings, hidden=hidden, bins=8, bound=3.0)
    return Task(
        name=name,
        spec=spec,
        train=train.reshape(len(train), dim),
        test=test_y,
        steps=steps,
        metric="bits/dim",
        to_metric=bits_per_dim,
        fresh_batch=dequantize,
        source=source,
    )


def multiscale_task(name: str, steps: int, seed: int = 0) -> Task:
    r"""flowlab's multi-scale RealNVP on images; it dequantizes and logit-transforms inside.

    Its ``log_prob`` takes the levels and already counts the :math:`-D\log K` of the
    rescaling, so bits/dim is :math:`-\log p / (D \log 2)`.  The test levels are the same as
    in :func:`flat_image_task`; the dequantization noise is the model's own draw.
    """
    train, test, levels, shape, source = _levels(name)
    dim = math.prod(shape)

    def build_models(impls: list[str], kinds: list[str], seed: int) -> dict[str, Contender]:
        if "flowlab" not in impls:
            return {}
        from flowlab.models.multiscale import MultiScaleFlow

        torch.manual_seed(seed)
        # the margin of the committed results (the default is now 1e-6, NOTES 8k)
        flow = MultiScaleFlow(shape, num_levels=levels, logit_alpha=0.05)
        c = Contender("flowlab", "multi-scale", flow, flow.log_prob, flow.sample)
        return {c.label: c}

    return Task(
        name=name,
        spec=ModelSpec(features=dim),
        train=train,
        test=test,
        steps=steps,
        metric="bits/dim",
        to_metric=lambda nll: nll / (dim * math.log(2.0)),
        source=source,
        build_models=build_models,
        notes=["multi-scale: flowlab's MultiScaleFlow (dequantizes and logit-transforms "
               "inside, with its own noise draws); no peer has a comparable ready-made model"],
    )
