r"""One bound on how much a layer's generative direction may expand: :func:`bound_expansion`.

An affine layer's generative direction :math:`g` multiplies by :math:`e^{m}` with
:math:`m = -s(\cdot)`, the negated log-scale its conditioner computed (for IAF, whose sampling
pass is the multiplication, :math:`m = s`).  Where the learnt scale can be tiny -- Glow's
sigmoid scale :math:`\operatorname{sigmoid}(\tilde s + 2)` has no lower bound -- sampling at
:math:`T = 1` meets latents that the data never produced, :math:`e^{m}` reaches
:math:`10^{5}` and more, and the next layer's conditioner, fed that value, returns a yet
smaller scale: the draw overflows to inf/NaN within two layers (5 of 512 draws of the shipped
``mnist5k-glow`` at seed 0).

Where a layer's own parameterization leaves that expansion unbounded, the layer bounds it with
:func:`bound_expansion`, :math:`m \le B =` :data:`MAX_LOG_EXPANSION` :math:`= 5` (a factor of at
most :math:`e^5 \approx 148` per layer), **in both directions**, so that the layer stays a
bijection with an exact log-determinant and the density it trains is the one it samples from:
:class:`~flowlab.transforms.GlowCoupling` with its sigmoid scale (:math:`\log\sigma_s \ge -B`),
the learnt prior of Glow's factored-out latents (:math:`\log\sigma \le B`) and TarFlow's
blocks (:math:`\alpha \le B`).  The shipped checkpoints' layers reach :math:`m = 3.94` at most on
their test sets (``mnist5k-glow``; 2.9 for the others), so their test bits/dim are unchanged.

Layers with a bound of their own are left as they are: the tanh-bounded log-scales
(:func:`~flowlab.transforms.univariate.soft_clamp`, ``scale_bound``, default 3 for every affine
layer) never expand by more than :math:`e^{B_s}`.  A layer built with
``scale_bound=None`` is the textbook, unbounded layer on purpose (the course's assignments
compare students' layers with it): its sampling can overflow, and :meth:`Flow.sample
<flowlab.flow.Flow.sample>` then warns with the number of non-finite draws.

Example:
    >>> import torch
    >>> bound_expansion(torch.tensor([-1.0, 4.0, 60.0]))
    tensor([-1., 4., 5.])
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["MAX_LOG_EXPANSION", "bound_expansion"]

#: :math:`B`: the largest log-factor by which one layer's generative direction multiplies.
MAX_LOG_EXPANSION = 5.0


def bound_expansion(log_factor: Tensor) -> Tensor:
    r""":math:`\min(m, B)`: the log of the factor a generative step multiplies by, bounded.

    Args:
        log_factor: :math:`m`, elementwise (any shape), e.g. the negated log-scale of an
            affine coupling's inverse.
    """
    return log_factor.clamp(max=MAX_LOG_EXPANSION)
