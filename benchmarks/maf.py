#!/usr/bin/env python
r"""flowlab's MAF against a bare-PyTorch MAF of the same architecture, zuko's and nflows' MAF;
TarFlow's step time and sampling rate.

    nice -n 10 python benchmarks/maf.py              # full run (~15 min on a shared 2-core box)
    python benchmarks/maf.py --quick                 # smoke run, about a minute

Sections:

``speed``    64-d MAF, 5 layers, MADE 64 -> 256 -> 256 -> 128, alternating orders (input,
             reversed, ...), affine with the soft-clamped log-scale :math:`3\tanh(\tilde s/3)`,
             batch 256: time of a training step (forward, backward, Adam) and of drawing 256
             samples (5 x 64 sequential MADE passes).  flowlab's ``maf(64)`` against
             :class:`BareMAF` below (no flowlab import, parameters copied from flowlab so both
             compute the same function: checked before timing), interleaved rounds and paired
             per-round ratios (``measure.py``).  zuko's and nflows' MAF of the same sizes are
             timed too (their own scale parameterisations).
``density``  equal steps (lockstep: the same batches for every contender), 3 seeds: the flat
             8x8 digits (64-d, dequantized outside the model, bits/dim) and the 2-D
             checkerboard (nats, next to the true density's NLL).  Adam, lr 1e-3, batch 256.
``tarflow``  TarFlow for the digits (1x8x8, 2x2 patches) and for MNIST (1x28x28, 4x4 patches):
             ms per training step (batch 64) and images/s when sampling 64 (denoised).

Results: ``benchmarks/results/maf.md`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from measure import interleaved_times, paired_ratio, summarize  # noqa: E402
from provenance import Provenance  # noqa: E402


# ------------------------------------------------------------------------ bare PyTorch MAF
class BareMADE(nn.Module):
    """Masked MLP ``D -> hidden... -> 2D`` by hand: degrees, masks, ``x @ (W * M).T + b``."""

    def __init__(self, features: int, hidden: tuple[int, ...], reverse: bool) -> None:
        super().__init__()
        d = features
        m_in = torch.arange(1, d + 1).flip(0) if reverse else torch.arange(1, d + 1)
        degrees = [m_in] + [torch.arange(h) % (d - 1) + 1 for h in hidden]
        masks = [(b[:, None] >= a[None, :]).float() for a, b in zip(degrees, degrees[1:])]
        masks.append((m_in.repeat(2)[:, None] > degrees[-1][None, :]).float())
        self.params = nn.ParameterList()  # weight 0, bias 0, weight 1, ...
        for i, m in enumerate(masks):
            lin = nn.Linear(m.shape[1], m.shape[0])
            if i == len(masks) - 1:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
            self.params.append(lin.weight)
            self.params.append(lin.bias)
            self.register_buffer(f"mask{i}", m)
        self.n = len(masks)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(self.n):
            w, b = self.params[2 * i], self.params[2 * i + 1]
            x = nn.functional.linear(x, w * getattr(self, f"mask{i}"), b)
            if i < self.n - 1:
                x = torch.relu(x)
        return x


class BareMAF(nn.Module):
    """``layers`` affine MAF layers with alternating orders and a standard-normal base."""

    def __init__(self, features: int, layers: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.d = features
        self.mades = nn.ModuleList(BareMADE(features, hidden, i % 2 == 1) for i in range(layers))

    def _scale_shift(self, made: BareMADE, x: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = made(x).view(x.shape[0], 2, self.d).unbind(1)  # flowlab's order: shift first
        return 3.0 * torch.tanh(raw / 3.0), shift

    def log_prob(self, x: Tensor) -> Tensor:
        total = x.new_zeros(x.shape[0])
        for made in self.mades:
            s, t = self._scale_shift(made, x)
            x = x * torch.exp(s) + t
            total = total + s.sum(1)
        return total - 0.5 * (x * x).sum(1) - 0.5 * self.d * math.log(2 * math.pi)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        z = torch.randn(n, self.d)
        for made in reversed(self.mades):
            x = torch.zeros_like(z)
            for _ in range(self.d):
                s, t = self._scale_shift(made, x)
                x = (z - t) * torch.exp(-s)
            z = x
        return z


# ------------------------------------------------------------------------------ contenders
def flowlab_maf(d: int, layers: int, hidden: tuple[int, ...], seed: int):
    from flowlab.models.maf import maf

    torch.manual_seed(seed)
    flow = maf(d, transforms=layers, hidden=hidden, validate=False)
    return flow, flow.log_prob, flow.sample


def bare_maf(d, layers, hidden, seed, like=None):
    torch.manual_seed(seed)
    model = BareMAF(d, layers, hidden)
    if like is not None:
        with torch.no_grad():
            for p, q in zip(model.parameters(), like.parameters(), strict=True):
                p.copy_(q)
    return model, model.log_prob, model.sample


def zuko_maf(d, layers, hidden, seed):
    import zuko

    torch.manual_seed(seed)
    flow = zuko.flows.MAF(d, transforms=layers, hidden_features=hidden)
    for t in flow.transform.transforms:
        last = [m for m in t.hyper.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,))


def nflows_maf(d, layers, hidden, seed):
    from nflows.distributions.normal import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import CompositeTransform, ReversePermutation
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform

    assert len(set(hidden)) == 1, "nflows' MADE has one hidden width"
    torch.manual_seed(seed)
    ts = []
    for i in range(layers):
        ts.append(MaskedAffineAutoregressiveTransform(
            d, hidden[0], num_blocks=len(hidden) - 1, use_residual_blocks=False))
        if i < layers - 1:
            ts.append(ReversePermutation(d))
    flow = Flow(CompositeTransform(ts), StandardNormal([d]))
    return flow, flow.log_prob, flow.sample


CONTENDERS = {"flowlab": flowlab_maf, "bare": bare_maf, "zuko": zuko_maf, "nflows": nflows_maf}


def available(names):
    import importlib.util

    return [n for n in names if n in ("flowlab", "bare") or importlib.util.find_spec(n)]


# ------------------------------------------------------------------------------------ speed
def section_speed(args) -> list[str]:
    d, layers, hidden, batch = 64, 5, (256, 256), 256
    x = torch.randn(batch, d, generator=torch.Generator().manual_seed(0))
    built = {}
    fl = flowlab_maf(d, layers, hidden, 0)
    built["flowlab"] = fl
    built["bare"] = bare_maf(d, layers, hidden, 0, like=fl[0])
    with torch.no_grad():  # same function: perturb flowlab, copy again, compare
        for p in fl[0].parameters():
            p.add_(0.01 * torch.randn_like(p))
        built["bare"] = bare_maf(d, layers, hidden, 0, like=fl[0])
        assert torch.allclose(fl[1](x), built["bare"][1](x), atol=1e-3), "bare != flowlab"
    for name in available(["zuko", "nflows"]):
        built[name] = CONTENDERS[name](d, layers, hidden, 0)

    def step_fn(module, log_prob):
        opt = torch.optim.Adam(module.parameters(), lr=1e-5)

        def step():
            opt.zero_grad(set_to_none=True)
            (-log_prob(x).mean()).backward()
            opt.step()
        return step

    def sample_fn(sample):
        def draw():
            with torch.no_grad():
                sample(batch)
        return draw

    rounds = 5 if args.quick else 15
    t_step = interleaved_times({k: step_fn(m, lp) for k, (m, lp, _) in built.items()},
                               rounds=rounds, inner=5, warmup=3)
    t_sample = interleaved_times({k: sample_fn(s) for k, (_, _, s) in built.items()},
                                 rounds=max(3, rounds * 2 // 3), inner=1, warmup=1)
    lines = [f"## Speed: 64-d MAF, {layers} layers, MADE hidden {hidden}, batch {batch}", "",
             "| impl | params | step ms (median) | step / bare (paired median, IQR) "
             "| sample 256 ms | sample / bare (paired median, IQR) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for k, (m, _, _) in built.items():
        st, ss = summarize(t_step[k]), summarize(t_sample[k])
        rs, rsa = paired_ratio(t_step[k], t_step["bare"]), paired_ratio(t_sample[k], t_sample["bare"])
        lines.append(f"| {k} | {sum(p.numel() for p in m.parameters()):,} | {1e3 * st['median']:.2f} "
                     f"| {rs['median']:.3f} ({rs['q1']:.3f}-{rs['q3']:.3f}) | "
                     f"{1e3 * ss['median']:.0f} | {rsa['median']:.3f} ({rsa['q1']:.3f}-{rsa['q3']:.3f}) |")
    lines += ["", "zuko: log-scale soft-clipped by zuko; nflows: scale = softplus(a) + 1e-3 and "
              "ReversePermutation layers between the MADEs (zuko and flowlab alternate the "
              "MADE's order instead).", ""]
    return lines


# ---------------------------------------------------------------------------------- density
def section_density(args) -> list[str]:
    from tasks import flat_image_task, toy_task

    steps = 150 if args.quick else args.steps
    seeds = [0] if args.quick else [0, 1, 2]
    impls = available(["flowlab", "zuko", "nflows"])
    lines = [f"## Density at equal steps ({steps} steps, batch 256, Adam lr 1e-3, seeds {seeds})",
             ""]
    for task, layers, hidden in [(flat_image_task("digits", steps), 5, (256, 256)),
                                 (toy_task("checkerboard", steps), 5, (64, 64))]:
        results = {k: [] for k in impls}
        for seed in seeds:
            models = {k: CONTENDERS[k](task.spec.features, layers, hidden, seed) for k in impls}
            opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, (m, _, _) in models.items()}
            gen = torch.Generator().manual_seed(seed)
            for step in range(steps):
                xb = task.batch(256, gen)
                for k in impls:
                    m, lp, _ = models[k]
                    opts[k].zero_grad(set_to_none=True)
                    loss = -lp(xb).mean()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(m.parameters(), 10.0)
                    opts[k].step()
            for k in impls:
                with torch.no_grad():
                    nll = float(-models[k][1](task.test).mean())
                results[k].append(task.to_metric(nll))
            print(f"[density] {task.name} seed {seed}: "
                  + ", ".join(f"{k} {results[k][-1]:.3f}" for k in impls), flush=True)
        ref = f" (true density: {task.reference:.3f})" if task.reference is not None else ""
        lines += [f"**{task.name}**, test {task.metric}{ref}, MAF {layers} layers, MADE {hidden}:",
                  "", "| impl | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
                  "| --- |" + " ---: |" * (len(seeds) + 1)]
        for k in impls:
            vals = results[k]
            lines.append(f"| {k} | " + " | ".join(f"{v:.3f}" for v in vals)
                         + f" | {statistics.fmean(vals):.3f} |")
        lines.append("")
    return lines


# ---------------------------------------------------------------------------------- tarflow
def section_tarflow(args) -> list[str]:
    from flowlab.models.tarflow import TarFlow

    configs = {
        "digits 1x8x8, 2x2 patches, 4 blocks x 2 layers, width 64": (
            (1, 8, 8), 17, dict(patch_size=2, blocks=4, width=64, depth=2, heads=4)),
        "MNIST 1x28x28, 4x4 patches, 4 blocks x 2 layers, width 128": (
            (1, 28, 28), 256, dict(patch_size=4, blocks=4, width=128, depth=2, heads=4)),
    }
    lines = ["## TarFlow: training step (batch 64) and sampling (64 images, denoised)", "",
             "| model | params | step ms (median) | sampling images/s |", "| --- | ---: | ---: | ---: |"]
    for name, (shape, k, kw) in configs.items():
        torch.manual_seed(0)
        model = TarFlow(shape, k, noise_std=0.05, validate=False, **kw)
        x = torch.randint(0, k, (64, *shape)).float()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            model.nll(x).backward()
            opt.step()

        t = interleaved_times({"step": step}, rounds=3 if args.quick else 8, inner=2, warmup=2)
        model.eval()
        t0 = time.perf_counter()
        reps = 1 if args.quick else 3
        for _ in range(reps):
            model.sample(64)
        ips = 64 * reps / (time.perf_counter() - t0)
        lines.append(f"| {name} | {sum(p.numel() for p in model.parameters()):,} | "
                     f"{1e3 * summarize(t['step'])['median']:.1f} | {ips:.1f} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=2000, help="training steps of the density part")
    ap.add_argument("--parts", default="speed,density,tarflow")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    started = Provenance.for_script(__file__)
    torch.set_num_threads(1)
    body: list[str] = []
    parts = args.parts.split(",")
    if "speed" in parts:
        body += section_speed(args)
    if "density" in parts:
        body += section_density(args)
    if "tarflow" in parts:
        body += section_tarflow(args)
    versions = []
    for lib in ("zuko", "nflows"):
        try:
            versions.append(f"{lib} {__import__(lib).__version__}")
        except Exception:
            pass
    head = ["# MAF and TarFlow benchmarks", "",
            started.line(), "",
            f"Peers: {', '.join(versions) or 'none installed'}; 1 thread.  "
            "Method: the docstring of `benchmarks/maf.py`.", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    name = "maf-quick.md" if args.quick else "maf.md"
    (args.out / name).write_text("\n".join(head + body))
    print("\n".join(head + body))


if __name__ == "__main__":
    main()
