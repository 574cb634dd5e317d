import time, torch
torch.set_num_threads(1)
from flowlab.models.realnvp import realnvp_2d
from flowlab.models.multiscale import multiscale_realnvp
from torch.nn.utils import get_total_norm
for name, m, x in [("realnvp_2d", realnvp_2d(), torch.randn(256, 2)),
                   ("multiscale digits", multiscale_realnvp((1,8,8), 17), torch.randint(0,17,(64,1,8,8)).float())]:
    m.log_prob(x).mean().backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    one = torch.ones(()); 
    def amp():
        h = torch.zeros(()); torch._amp_foreach_non_finite_check_and_unscale_(grads, h, one); return h.item()
    def l2(): return get_total_norm(grads).item()
    def linf(): return get_total_norm(grads, float("inf")).item()
    def sums(): return torch.stack([g.sum() for g in grads]).sum().item()
    print(name, len(grads), "tensors", sum(g.numel() for g in grads), "numbers")
    for f in (amp, l2, linf, sums):
        for _ in range(50): f()
        best = []
        for r in range(5):
            t = time.perf_counter()
            for _ in range(500): f()
            best.append((time.perf_counter() - t) / 500 * 1e6)
        print(f"  {f.__name__:6s} {min(best):8.1f} us/call (min of 5x500)")
