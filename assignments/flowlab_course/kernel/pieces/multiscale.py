r"""The grader's blocks for assignment 3's multi-scale part (the part ``reveals`` squeeze).

Block :math:`i` squeezes (all blocks but the last: :math:`(C, H, W) \to (4C, H/2, W/2)`) and then
applies the elementwise :math:`y = e^{a} (x + \tanh(x)/2)` with a per-channel :math:`a`, whose
log-det :math:`\sum (a + \log(1 + (1 - \tanh^2 x)/2))` differs from sample to sample.  Plain torch.
"""

import torch


class GraderBlock(torch.nn.Module):
    """``forward(x) -> (y, logabsdet)``: an optional squeeze, then the elementwise map above."""

    def __init__(self, a, squeeze):
        super().__init__()
        self.a, self.squeeze = a, squeeze

    def forward(self, x):
        if self.squeeze:
            b, c, h, w = x.shape
            x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
            x = x.reshape(b, 4 * c, h // 2, w // 2)
        a = self.a.reshape(1, -1, 1, 1)
        y = torch.exp(a) * (x + 0.5 * torch.tanh(x))
        log_d = a + torch.log(1 + 0.5 * (1 - torch.tanh(x) ** 2))
        return y, log_d.reshape(x.shape[0], -1).sum(dim=1)


def blocks(params):
    """One :class:`GraderBlock` per per-channel parameter vector; every one but the last squeezes."""
    return [GraderBlock(a, i < len(params) - 1) for i, a in enumerate(params)]
