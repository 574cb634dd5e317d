"""bfloat16 autocast on the CPU: step time of the MNIST-5k image models, float32 against bf16.

The trainer's ``bf16=True`` (``flowlab train --bf16``) wraps the forward pass in
``torch.autocast(device_type, dtype=torch.bfloat16)``; the loss, the optimiser and every
evaluation stay in float32.  Whether that is faster depends on the chip, not only on the flags
in ``/proc/cpuinfo``: an AMD EPYC with ``avx512_bf16`` ran these steps 1.9x faster
(``results/bf16_cpu.md``), an Intel Xeon with ``avx512_bf16`` but no ``amx_bf16`` 1.1-1.3x
*slower* (``results/bf16_cpu-xeon.md``, written with ``--out``).  This script measures one
optimisation step (forward, backward, Adam) of the two models of the MNIST-5k checkpoints,
1x28x28, batch 64, one thread, repetitions interleaved (alternating order,
``benchmarks/measure.py``) so that a change of machine load hits both, medians compared.

    python benchmarks/bf16_cpu.py            # 7 interleaved repetitions of 3 steps
    python benchmarks/bf16_cpu.py --quick    # 3 repetitions of 2 steps

Writes ``benchmarks/results/bf16_cpu.md``.  A speed ratio, not a quality claim: whether bf16
training reaches the same bits/dim is measured by the checkpoints themselves (``NOTES.md`` 8f).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from flowlab.models import Glow, MultiScaleFlow
from measure import interleaved_times
from provenance import Provenance

RESULTS = Path(__file__).parent / "results" / "bf16_cpu.md"
MODELS = {
    "Glow (2 x 8 steps, 128 hidden)":
        lambda: Glow((1, 28, 28), 256, levels=2, steps=8, hidden_channels=128, logit_alpha=0.05),
    "multi-scale RealNVP (2 scales, 64 hidden, 1 block)":
        lambda: MultiScaleFlow((1, 28, 28), 256, scales=2, hidden_channels=64, blocks=1,
                               logit_alpha=0.05),
}


def cpu_flags() -> str:
    """The CPU's model name and which of the bf16-relevant instruction sets it reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    lines = text.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in lines
                  if line.startswith("flags")), [])
    found = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}; " + (", ".join(found) or "none of avx2/avx512f/avx512_bf16/amx_bf16")


def one_step(model, opt, x: torch.Tensor, bf16: bool):
    """A callable doing one optimisation step in float32 or under bf16 autocast."""
    def step():
        opt.zero_grad(set_to_none=True)
        with model.checks_disabled(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.nll(x)
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    run = Provenance.for_script(__file__, argv)
    reps, steps = (3, 2) if args.quick else (7, 3)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 1, 28, 28), generator=g).float()
    rows = []
    for name, build in MODELS.items():
        torch.manual_seed(0)
        model = build()
        with torch.no_grad():
            model.log_prob(x)  # ActNorm's data-dependent initialisation
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        # warm-up: oneDNN picks its kernels on the first call of each precision
        times = interleaved_times({"fp32": one_step(model, opt, x, False),
                                   "bf16": one_step(model, opt, x, True)},
                                  rounds=reps, inner=steps, warmup=1)
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        rows.append(f"| {name} | {sum(q.numel() for q in model.parameters()):,} | "
                    f"{fp32 * 1e3:.0f} | {bf16 * 1e3:.0f} | {fp32 / bf16:.2f}x |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# bfloat16 autocast on the CPU (one optimisation step, 1x28x28, batch 64, 1 thread)",
        "",
        run.line(),
        "",
        f"{reps} interleaved repetitions of {steps} steps, medians; CPU flags: {cpu_flags()}.",
        "",
        "| model | params | float32 ms/step | bf16 ms/step | speed-up |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
