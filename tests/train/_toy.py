"""A tiny flow built only from flowlab's foundation (Flow, StandardNormal, Transform), so the
trainer's tests do not depend on the model zoo; also a script entry point for the subprocess
tests (DDP, kill and resume)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowlab.distributions import StandardNormal
from flowlab.flow import Flow
from flowlab.transforms.base import Transform


class ToyAffine(Transform):
    """z = (x - b) * exp(-a), elementwise, log|det| = -sum(a)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(dim))
        self.b = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (x - self.b) * torch.exp(-self.a), (-self.a.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * torch.exp(self.a) + self.b, self.a.sum().expand(z.shape[0])


class ToyCoupling(Transform):
    """Affine coupling on 2-D points: z2 = x2 * exp(s(x1)) + t(x1), s bounded by tanh."""

    def __init__(self, flip: bool = False, hidden: int = 16) -> None:
        super().__init__()
        self.flip = flip
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = x[:, :1], x[:, 1:]
        return (b, a) if self.flip else (a, b)

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([b, a] if self.flip else [a, b], dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split(x)
        s, t = self.net(a).chunk(2, dim=1)
        s = torch.tanh(s)
        return self._join(a, b * torch.exp(s) + t), s.sum(dim=1)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self._split(z)
        s, t = self.net(a).chunk(2, dim=1)
        s = torch.tanh(s)
        return self._join(a, (b - t) * torch.exp(-s)), -s.sum(dim=1)


def toy_flow(seed: int = 0, couplings: int = 2) -> Flow:
    torch.manual_seed(seed)
    layers: list[Transform] = [ToyAffine(2)]
    for i in range(couplings):
        layers.append(ToyCoupling(flip=bool(i % 2)))
    return Flow(StandardNormal(2), layers)


def toy_data(n: int = 512, seed: int = 0) -> Tensor:
    """A correlated, shifted 2-D Gaussian: NLL of the truth is known."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    return z @ torch.tensor([[1.0, 0.0], [0.8, 0.6]]) * 2.0 + torch.tensor([3.0, -1.0])


def toy_data_entropy() -> float:
    """Differential entropy of the data distribution (the best achievable NLL), in nats."""
    cov_det = (2.0 * 0.6 * 2.0) ** 2  # det(A)^2 for x = A z + mu
    return 0.5 * math.log((2 * math.pi * math.e) ** 2 * cov_det)


def main(argv: list[str] | None = None) -> None:
    """Train the toy flow with the Trainer: `python _toy.py run_dir steps [key=value ...]`."""
    import sys

    from flowlab.train import TrainConfig, Trainer, teardown

    args = sys.argv[1:] if argv is None else argv
    run_dir, steps = args[0], int(args[1])
    extra: dict[str, object] = {}
    for item in args[2:]:
        key, value = item.split("=", 1)
        extra[key] = value == "true" if value in ("true", "false") else (
            float(value) if "." in value else int(value)
        )
    cfg = TrainConfig(
        run_dir=run_dir, steps=steps, batch_size=64, lr=5e-3, warmup_steps=5, log_every=5,
        eval_every=10_000, checkpoint_every=5, sample_every=0, progress=False,
    ).updated(extra)
    trainer = Trainer(toy_flow(), toy_data(), toy_data(256, seed=1), cfg)
    try:
        trainer.fit()
        if trainer.info.is_main:
            torch.save(trainer.model.state_dict(), f"{run_dir}/final_params.pt")
    finally:
        teardown()


if __name__ == "__main__":
    main()
