"""The grader's ``causal_mask`` (assignment 5's causal-attention part, which ``reveals`` it).

Put into the notebook's namespace while the student's ``causal_attention`` runs, so that a wrong
mask costs only the ``causal_mask`` part.  Plain torch.
"""

import torch


def causal_mask(T, strict=False):
    """``(T, T)`` booleans: True iff token i may attend to token j (``j <= i``; ``j < i`` if strict)."""
    i = torch.arange(T).reshape(-1, 1)
    j = torch.arange(T).reshape(1, -1)
    return j < i if strict else j <= i
