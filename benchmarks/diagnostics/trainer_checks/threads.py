"""steps/s of the README 2-D example and a digits model at 1 vs 2 torch threads."""
import os, statistics, sys, time
import torch
from flowlab.data.toy2d import two_moons
from flowlab.data.images import load_digits
from flowlab.models.realnvp import realnvp; realnvp_2d = lambda: realnvp(2)
from flowlab.models.multiscale import MultiScaleFlow as multiscale_realnvp

def rate(build, x, batch, steps, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    flow = build()
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        loss = flow.nll(x[torch.randint(len(x), (batch,), generator=g)]); opt.zero_grad(); loss.backward(); opt.step()
    t = time.perf_counter()
    for _ in range(steps):
        loss = flow.nll(x[torch.randint(len(x), (batch,), generator=g)]); opt.zero_grad(); loss.backward(); opt.step()
    return steps / (time.perf_counter() - t)

cases = {
    "README 2-D (realnvp_2d, batch 256)": (realnvp_2d, two_moons(2000, seed=0), 256, 60),
    "digits (multiscale_realnvp defaults, batch 128)": (lambda: multiscale_realnvp((1, 8, 8), 17), load_digits("train").float(), 128, 6),
}
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
print("load average before:", os.getloadavg())
for name, (build, x, batch, steps) in cases.items():
    res = {1: [], 2: []}
    for r in range(reps):
        for th in (1, 2):
            res[th].append(rate(build, x, batch, steps, th))
    print(f"{name}: 1 thread {statistics.median(res[1]):.1f} steps/s {[round(v,1) for v in res[1]]}; "
          f"2 threads {statistics.median(res[2]):.1f} steps/s {[round(v,1) for v in res[2]]}", flush=True)
print("load average after:", os.getloadavg())
