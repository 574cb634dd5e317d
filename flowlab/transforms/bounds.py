r"""One bound on how much a layer's generative direction may expand: :func:`bound_expansion`.

An affine layer's generative direction :math:`g` multiplies by :math:`e^{m}` with
:math:`m = -s(\cdot)`, the negated log-scale its conditioner computed (for IAF, whose sampling
pass is the multiplication, :math:`m = s`).  Where the learnt scale can be tiny -- Glow's
sigmoid scale :math:`\operatorname{sigmoid}(\tilde s + 2)` has no lower bound -- sampling at
:math:`T = 1` meets latents that the data never produced, :math:`e^{m}` reaches
:math:`10^{5}` and more, and the next layer's conditioner, fed that value, returns a yet
smaller scale: the draw overflows to inf/NaN within two layers (5 of 512 draws of the shipped
``mnist5k-glow`` at seed 0).

Every affine-type generative direction (:class:`~flowlab.transforms.AffineCoupling`,
:class:`~flowlab.transforms.MaskedAffineCoupling`, :class:`~flowlab.transforms.GlowCoupling`,
:class:`~flowlab.transforms.MaskedAffineAutoregressive`,
:class:`~flowlab.transforms.InverseAffineAutoregressive`, and in :mod:`flowlab.models` the
learnt prior of Glow's factored-out latents and TarFlow's blocks) therefore clamps :math:`m` to at
most :data:`MAX_LOG_EXPANSION` :math:`= B = 5` (a factor of at most :math:`e^5 \approx 148`
per layer) and reports the clamped :math:`m` as its log-determinant, so ``inverse`` stays a
bijection with the log-determinant of what it computed.  The normalizing direction (the
density, training, bits/dim) is not touched.  Where the data's own log-scales stay inside the
bound, ``inverse(forward(x)) == x`` exactly as before: the shipped checkpoints' layers reach
:math:`m = 3.94` at most on their test sets (``mnist5k-glow``; 2.9 for the others), so their
test bits/dim and reconstructions are unchanged.  The tanh-bounded layers
(``scale_bound`` :math:`\le 5`, the defaults 2 and 3) never reach the bound.

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
