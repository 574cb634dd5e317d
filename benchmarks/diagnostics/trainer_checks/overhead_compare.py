"""Trainer steps/s with the public gradient check (get_total_norm every step) against the same
Trainer with the private fused AMP flag check of the previous version (monkeypatched in), and
the bare loop; interleaved repetitions, medians.  Same model/data/settings as
benchmarks/trainer_overhead.py."""
import statistics, sys, tempfile
import torch
sys.path.insert(0, "benchmarks")
import trainer_overhead as bench
from flowlab.data.toy2d import toy_dataset
from flowlab.train import trainer as trainer_module

public = trainer_module.gradient_norm
_one = torch.ones(())

def private_flag(params, grad_clip=0.0):
    # the old path: NaN/inf flag from torch's fused AMP kernel; 0 = healthy, 1 = NaN/inf
    grads = [p.grad for p in params if p.grad is not None]
    found = torch.zeros(())
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found, _one)
    return torch.where(found > 0, torch.tensor(float("nan")), found)

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
torch.set_num_threads(1)
data = toy_dataset("two_moons", 8192, seed=0)
bench.bare_loop(data, 10, 0)
res = {"bare": [], "public": [], "private": []}
with tempfile.TemporaryDirectory() as tmp:
    for rep in range(reps):
        # each loop returns (steps per wall second, CPU ms per step): the first is compared
        res["bare"].append(bench.bare_loop(data, steps, rep)[0])
        trainer_module.gradient_norm = public
        res["public"].append(bench.trainer_loop(data, steps, rep, f"{tmp}/p{rep}")[0])
        trainer_module.gradient_norm = private_flag
        res["private"].append(bench.trainer_loop(data, steps, rep, f"{tmp}/q{rep}")[0])
        trainer_module.gradient_norm = public
med = {k: statistics.median(v) for k, v in res.items()}
for k, v in res.items():
    print(f"{k:8s} median {med[k]:.1f} steps/s  {[round(x) for x in v]}")
print(f"public/bare {med['public']/med['bare']:.3f}  private/bare {med['private']/med['bare']:.3f}  public/private {med['public']/med['private']:.3f}")
