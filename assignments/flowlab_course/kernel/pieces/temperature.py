r"""A flow whose every call is recorded, for assignment 4's temperature part.

:func:`flow` builds ``Flow(base, [affine])`` with the generative direction
:math:`g(z) = z \cdot \text{scale} + \text{shift}` elementwise and a base whose ``sample`` ignores
any temperature it is given (:math:`\varepsilon \sim \mathcal N(0, I)` always), so the grader can
see from the samples alone whether the student scaled the latent.  The log records the
temperatures passed to the base, the calls of ``forward``/``inverse`` and of ``Flow.sample``.
Computes nothing graded.  Uses flowlab's ungraded ``Flow``, ``StandardNormal`` and ``Transform``.
"""

import torch

from flowlab.distributions import StandardNormal
from flowlab.flow import Flow
from flowlab.transforms.base import Transform


def flow(event, scale, shift):
    """``(flow, log)``: the recorded flow for ``event`` shape, ``scale`` and ``shift`` of that shape."""
    log = {"temperatures": [], "inverse": 0, "forward": 0, "flow_sample": 0}
    scale, shift = scale.float(), shift.float()
    event = tuple(event)

    class GraderBase(StandardNormal):
        def sample(self, n, temperature=1.0, **kwargs):
            log["temperatures"].append(float(temperature) if isinstance(temperature, (int, float))
                                       else -1.0)
            return torch.randn((int(n), *self.event_shape))

    class GraderAffine(Transform):
        """g(z) = z * scale + shift elementwise; f(x) = (x - shift) / scale."""

        def forward(self, x):
            log["forward"] += 1
            return (x - shift) / scale, x.new_zeros(x.shape[0]) - torch.log(scale).sum()

        def inverse(self, z):
            log["inverse"] += 1
            if tuple(z.shape[1:]) != event:
                log["bad_shape"] = list(z.shape)
                return z, z.new_zeros(z.shape[0])
            return z * scale + shift, z.new_zeros(z.shape[0]) + torch.log(scale).sum()

    class GraderFlow(Flow):
        def sample(self, *args, **kwargs):
            log["flow_sample"] += 1
            return super().sample(*args, **kwargs)

        def sample_with_log_prob(self, *args, **kwargs):
            log["flow_sample"] += 1
            return super().sample_with_log_prob(*args, **kwargs)

    return GraderFlow(GraderBase(event), [GraderAffine()]), log
