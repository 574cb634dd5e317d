"""Per-step time of the Trainer with the public gradient norm vs the private fused AMP flag
(monkeypatched into flowlab.train.trainer), realnvp(2) on two moons, batch 256, 1 thread.
Blocks of 50 steps alternate between the two; a step's time is the interval between two
calls of the public per-step hook (Trainer.on_step), i.e. the whole step as fit() runs it.
The 10th percentile and median of the per-step times are robust to a loaded machine (the
minimum-ish cost of a step).

    python benchmarks/diagnostics/trainer_checks/step_quantiles.py [BLOCKS]   # default 20
"""
import statistics, sys, time
import torch
from flowlab.data.toy2d import toy_dataset
from flowlab.models import realnvp
from flowlab.train import TrainConfig, Trainer, trainer as trainer_module

torch.set_num_threads(1)
public = trainer_module.gradient_norm
_one = torch.ones(())

def private_flag(params, grad_clip=0.0):
    grads = [p.grad for p in params if p.grad is not None]
    found = torch.zeros(())
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found, _one)
    return found  # 0 = healthy

checks = {"public": public, "private": private_flag}
blocks = int(sys.argv[1]) if len(sys.argv) > 1 else 20
data = toy_dataset("two_moons", 8192, seed=0)
torch.manual_seed(0)
tr = Trainer(realnvp(2), data, None, TrainConfig(
    steps=100 * blocks, batch_size=256, grad_clip=0.0, run_dir=None, progress=False,
    sample_every=0, val_fraction=0, device="cpu", log_every=10**9))
times = {"public": [], "private": []}
now = {"name": "public", "t": None}

@tr.on_step
def clock(record):
    t = time.perf_counter()
    if now["t"] is not None:
        times[now["name"]].append(t - now["t"])  # the step that just ended
    if record.step % 50 == 0:  # the next block uses the other check
        now["name"] = "private" if now["name"] == "public" else "public"
        trainer_module.gradient_norm = checks[now["name"]]
    now["t"] = time.perf_counter()

tr.prepare()
try:
    tr.fit()
finally:
    trainer_module.gradient_norm = public
q = lambda v, p: sorted(v)[int(p * len(v))]
for name, v in times.items():
    print(f"{name:8s} steps {len(v)}  p10 {q(v, .1)*1e3:.3f} ms  median {statistics.median(v)*1e3:.3f} ms")
d10 = q(times['public'], .1) - q(times['private'], .1)
print(f"public - private: p10 {d10*1e6:+.0f} us per step ({d10 / q(times['private'], .1) * 100:+.1f} %), "
      f"median {(statistics.median(times['public']) - statistics.median(times['private']))*1e6:+.0f} us")
