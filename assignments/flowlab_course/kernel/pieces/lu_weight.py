r"""The grader's ``weight()`` of an LU-parameterised 1x1 convolution (assignment 4).

:math:`W = P L U` with :math:`L` = the strict lower triangle of ``lower`` plus :math:`I` and
:math:`U` = the strict upper triangle of ``upper`` plus ``diag(sign * exp(log_abs_diag))``.  The
forward and inverse parts put it into the student's layer, so that a mistake in their
``weight()`` costs only the ``conv_weight`` part; both parts ``reveal`` it.  Plain torch.
"""

import torch


def weight(layer):
    """``P L U`` from the layer's tensors ``permutation``, ``lower``, ``upper``, ``log_abs_diag``, ``sign``."""
    c = layer.log_abs_diag.shape[0]
    lower = torch.tril(layer.lower, -1) + torch.eye(c, dtype=layer.lower.dtype)
    upper = torch.triu(layer.upper, 1) + torch.diag(layer.sign * torch.exp(layer.log_abs_diag))
    return layer.permutation @ lower @ upper


def patch(layer):
    """Make ``layer.weight()`` (or the property ``layer.weight``) the grader's :func:`weight`."""
    if isinstance(getattr(type(layer), "weight", None), property):
        layer.__class__ = type(type(layer).__name__, (type(layer),),
                               {"weight": property(weight)})
    else:
        object.__setattr__(layer, "weight", lambda: weight(layer))
    return layer
