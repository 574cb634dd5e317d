"""Every model trains under bfloat16 autocast, on the CPU as on a GPU.

Under ``torch.autocast`` convolutions and matrix products return bfloat16 activations while the
parameters stay float32.  The layers' input checks must accept that (it is the point of mixed
precision), the negative log-likelihood must come back in float32, finite, close to the float32
value, and its gradients must be finite.  The CPU has the same autocast machinery as CUDA, so
this test catches what would otherwise first fail on the first GPU the code meets
(``benchmarks/gpu_check.sh`` trains Glow with ``bf16=True``).
"""

from __future__ import annotations

import pytest
import torch

from flowlab.models import Glow, MultiScaleFlow, TarFlow, maf, realnvp
from flowlab.train import Trainer

IMAGE = (1, 8, 8)


def image_models():
    yield "glow", lambda: Glow(IMAGE, 17, levels=2, steps=2, hidden_channels=16, logit_alpha=0.05)
    yield "multiscale", lambda: MultiScaleFlow(IMAGE, 17, scales=2, hidden_channels=8, blocks=1)
    yield "multiscale-variational", lambda: MultiScaleFlow(
        IMAGE, 17, scales=2, hidden_channels=8, blocks=1, dequantization="variational"
    )
    yield "tarflow", lambda: TarFlow(IMAGE, 17, patch_size=2, blocks=2, width=16, depth=1, heads=2)


def vector_models():
    yield "realnvp", lambda: realnvp(4, couplings=4, hidden=(32, 32))
    yield "maf", lambda: maf(4, transforms=2, hidden=(32, 32))


VECTOR = dict(vector_models())
ALL = dict(image_models()) | VECTOR


def batch(name: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if name in VECTOR:
        return torch.randn(32, 4, generator=g)
    return torch.randint(0, 17, (32, *IMAGE), generator=g).float()


@pytest.mark.parametrize("name", sorted(ALL))
def test_bf16_autocast_gives_a_float32_nll_close_to_float32_and_finite_gradients(name):
    torch.manual_seed(0)
    model = ALL[name]()
    x = batch(name)
    with torch.no_grad():
        model.log_prob(x)  # data-dependent initialisation (ActNorm), in float32
    model.eval()  # no dropout / noise draws differing between the two passes
    torch.manual_seed(1)
    full = model.nll(x)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.nll(x)
    assert low.dtype == torch.float32
    assert torch.isfinite(low)
    # bfloat16 keeps ~3 significant digits per activation; the summed NLL stays within 2 %.
    assert abs(low.item() - full.item()) <= 0.02 * abs(full.item()) + 0.05, (low, full)
    low.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["glow", "multiscale"])
def test_trainer_bf16_trains_an_image_model(name):
    torch.manual_seed(0)
    x = torch.randint(0, 17, (128, *IMAGE)).float()
    trainer = Trainer(ALL[name](), x, None, steps=20, batch_size=32, lr=2e-3, bf16=True,
                      val_fraction=0, run_dir=None, progress=False, sample_every=0, log_every=5,
                      eval_every=20, seed=0)
    rows = [r for r in trainer.fit() if "loss" in r]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
