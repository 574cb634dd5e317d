"""In-process tests of assignment 5's trusted grader (autoregressive flows), on a LocalBridge.

The setup and solution cells of the source notebook run in a fresh namespace; the hidden tests
(``flowlab_course.graders.assignment5``) probe it through the same kernel-side code and wire format
as under nbgrader.  Checked here:

* the solution passes every part, and the untouched release fails every part;
* every catalogue mistake of assignment 5 fails its OWN part, at every one of ``FLOWLAB_REPEATS``
  (default 20) gradings with fresh random inputs, and passes every other part (cross-part
  isolation: the mask parts use grader-given degrees, the MAF parts a grader-made MADE, the
  attention part the grader's causal mask);
* correct solutions written in other styles pass (loops over units, ``torch.where``, float64
  helpers, coordinate-by-coordinate inverse, ``scaled_dot_product_attention``, einsum, debug prints
  and tqdm on stderr);
* failure messages are sentences in the lecture's terms, never tracebacks.
"""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

from local_grading import grade, namespace, parts, source
from nbgrader_course import patch

matplotlib.use("Agg")

from flowlab_course.graders.errors import GradingFailure  # noqa: E402

ASSIGNMENT = "05_autoregressive"
REPEATS = int(os.environ.get("FLOWLAB_REPEATS", "20"))


SOURCE = source(ASSIGNMENT)
PARTS = parts(SOURCE)
_namespace = namespace


def _grade(ns: dict, part: str) -> GradingFailure | None:
    """The failure of ``part`` (None if it passes)."""
    return grade("assignment5", ns, part)




MADE_SOLUTION = """    degrees = [torch.arange(1, features + 1)]
    for h in hidden_sizes:
        degrees.append(torch.arange(h) % (features - 1) + 1)
    return degrees"""
MASKS_SOLUTION = """    masks = []
    for m_prev, m in zip(degrees[:-1], degrees[1:]):
        masks.append((m[:, None] >= m_prev[None, :]).float())
    m_out = degrees[0].repeat(params_per_feature)
    masks.append((m_out[:, None] > degrees[-1][None, :]).float())
    return masks"""
INVERSE_SOLUTION = """        x = torch.zeros_like(z)
        for _ in range(z.shape[1]):
            mu, alpha = self.conditioner(x).chunk(2, dim=1)
            x = z * torch.exp(alpha) + mu
        return x, alpha.sum(dim=1)"""
FORWARD_SOLUTION = """        mu, alpha = self.conditioner(x).chunk(2, dim=1)
        z = (x - mu) * torch.exp(-alpha)
        return z, -alpha.sum(dim=1)"""
ATTENTION_SOLUTION = """    q, k, v = x @ w_q, x @ w_k, x @ w_v
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~causal_mask(x.shape[1]), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    if shift:
        out = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)
    return out"""
MASK_SOLUTION = """    i = torch.arange(T).reshape(-1, 1)
    j = torch.arange(T).reshape(1, -1)
    return j < i if strict else j <= i"""

ALTERNATIVES = {
    # issue 27: styles that must also pass the float32, the D = 16 / 20 / 24 and the T = 40 / 129
    # cases
    "comprehensions_tril_and_einsum": [
        ("    masks = []\n    for m_prev, m in zip(degrees[:-1], degrees[1:]):\n"
         "        masks.append((m[:, None] >= m_prev[None, :]).float())\n",
         "    masks = [torch.ge(m.unsqueeze(1), m_prev.unsqueeze(0)).to(torch.float32)\n"
         "             for m_prev, m in zip(degrees, degrees[1:])]\n"),
        ("    i = torch.arange(T).reshape(-1, 1)\n    j = torch.arange(T).reshape(1, -1)\n"
         "    return j < i if strict else j <= i",
         "    return torch.ones(T, T, dtype=torch.bool).tril(-1 if strict else 0)"),
        ("    q, k, v = x @ w_q, x @ w_k, x @ w_v\n"
         "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n",
         "    q, k, v = x @ w_q, x @ w_k, x @ w_v\n"
         "    scores = torch.einsum(\"btd,bsd->bts\", q, k) * q.shape[-1] ** -0.5\n"),
    ],
    "fixed_point_until_converged_by_count": [
        ("        x = torch.zeros_like(z)\n        for _ in range(z.shape[1]):\n",
         "        x = z.new_zeros(z.shape)\n        passes = 0\n"
         "        while passes < z.size(-1):\n            passes += 1\n"),
        ("    degrees = [torch.arange(1, features + 1)]\n    for h in hidden_sizes:\n"
         "        degrees.append(torch.arange(h) % (features - 1) + 1)\n    return degrees",
         "    return [torch.arange(features) + 1] + [\n"
         "        torch.remainder(torch.arange(h), features - 1) + 1 for h in hidden_sizes]"),
    ],
    "python_loops_and_float64": [
        (MADE_SOLUTION,
         "    out = [torch.tensor([d + 1 for d in range(features)])]\n"
         "    for h in hidden_sizes:\n        out.append(torch.tensor([k % (features - 1) + 1 for k in range(h)], dtype=torch.int64))\n"
         "    return out"),
        (MASKS_SOLUTION,
         "    masks = []\n    for a, b in zip(degrees, degrees[1:]):\n"
         "        M = torch.zeros(len(b), len(a), dtype=torch.float64)\n"
         "        for k in range(len(b)):\n            for j in range(len(a)):\n"
         "                if b[k] >= a[j]:\n                    M[k, j] = 1.0\n        masks.append(M)\n"
         "    out = torch.where(degrees[0][:, None] > degrees[-1][None, :], 1.0, 0.0)\n"
         "    masks.append(torch.cat([out] * params_per_feature, dim=0))\n    return masks"),
    ],
    "coordinate_by_coordinate_inverse": [
        (INVERSE_SOLUTION,
         "        import sys\n        from tqdm.auto import tqdm\n        x = z.new_zeros(z.shape)\n"
         "        for d in tqdm(range(z.shape[1]), file=sys.stderr):\n"
         "            mu, alpha = self.conditioner(x).chunk(2, dim=1)\n"
         "            x[:, d] = z[:, d] * alpha[:, d].exp() + mu[:, d]\n"
         "        mu, alpha = self.conditioner(x).chunk(2, dim=1)\n"
         "        return x, alpha.sum(-1)"),
        (FORWARD_SOLUTION,
         "        D = x.shape[1]\n        out = self.conditioner(x)\n"
         "        mu, alpha = torch.split(out, D, dim=1)\n        print('debug: forward', x.shape)\n"
         "        return (x - mu) / torch.exp(alpha), -torch.sum(alpha, dim=-1)"),
    ],
    "clone_inverse_and_einsum_attention": [
        (INVERSE_SOLUTION,
         "        x = torch.zeros_like(z)\n        for d in range(z.shape[1]):\n"
         "            params = self.conditioner(x)\n            D = z.shape[1]\n"
         "            x = x.clone()\n            x[:, d] = z[:, d] * torch.exp(params[:, D + d]) + params[:, d]\n"
         "        logdet = self.conditioner(x)[:, z.shape[1]:].sum(dim=1)\n        return x, logdet"),
        (ATTENTION_SOLUTION,
         "    q = torch.einsum('btd,de->bte', x, w_q)\n    k = torch.einsum('btd,de->bte', x, w_k)\n"
         "    v = torch.einsum('btd,de->bte', x, w_v)\n"
         "    T = x.shape[1]\n    s = torch.einsum('bie,bje->bij', q, k) / q.shape[-1] ** 0.5\n"
         "    s = torch.where(torch.tril(torch.ones(T, T, dtype=torch.bool)), s, torch.full_like(s, -math.inf))\n"
         "    out = torch.einsum('bij,bjv->biv', s.softmax(-1), v)\n"
         "    if shift:\n        out = torch.nn.functional.pad(out, (0, 0, 1, 0))[:, :T]\n    return out"),
        (MASK_SOLUTION,
         "    return torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1 if strict else 0)"),
    ],
    "sdpa_attention": [
        (ATTENTION_SOLUTION,
         "    import logging, warnings\n    logging.getLogger('student').warning('attention')\n"
         "    warnings.warn('student warning')\n"
         "    q, k, v = x @ w_q, x @ w_k, x @ w_v\n"
         "    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)\n"
         "    if shift:\n        out = torch.roll(out, 1, dims=1)\n        out[:, 0] = 0\n    return out"),
    ],
}


@pytest.mark.filterwarnings("ignore:student warning")
@pytest.mark.parametrize("style", sorted(ALTERNATIVES))
def test_alternative_correct_style_passes(style):
    nb = SOURCE
    for old, new in ALTERNATIVES[style]:
        nb = patch(nb, old, new)
    ns = _namespace(nb)
    failures = {p: str(e) for p in PARTS if (e := _grade(ns, p)) is not None}
    assert failures == {}


def test_attention_is_graded_with_the_graders_mask():
    """A wrong causal_mask costs the mask part only, even though causal_attention calls it."""
    ns = _namespace(patch(SOURCE, "return j < i if strict else j <= i", "return i <= j"))
    assert _grade(ns, "causal_mask") is not None
    assert _grade(ns, "causal_attention") is None
    assert ns["causal_mask"](3).tolist()[0] == [True, True, True]  # restored after grading


def test_future_leak_is_named_from_the_brute_force_dependencies():
    ns = _namespace(patch(SOURCE, "    if shift:\n        out = torch.cat", "    if False:\n        out = torch.cat"))
    err = _grade(ns, "causal_attention")
    assert err is not None and "information from the future leaks" in str(err)


def test_logdet_checked_against_the_brute_force_jacobian():
    """A log-det that matches no formula hint is still caught by the finite-difference Jacobian."""
    ns = _namespace(patch(SOURCE, "return z, -alpha.sum(dim=1)", "return z, -alpha.sum(dim=1) + 0.01"))
    err = _grade(ns, "maf_forward")
    assert err is not None and "log|det" in str(err)


def test_non_triangular_inverse_is_caught():
    ns = _namespace(patch(SOURCE, "x = z * torch.exp(alpha) + mu", "x = z * torch.exp(alpha) + mu + 0.1 * z.flip(1)"))
    err = _grade(ns, "maf_inverse")
    assert err is not None


def test_grader_references_agree_with_flowlab():
    """The grader's MADE formulas are flowlab's (flowlab.nets.made), written out independently."""
    from flowlab.nets.made import made_degrees, made_masks
    from flowlab_course.graders import assignment5 as grader

    for features, hidden in ((2, [3]), (4, [3, 5]), (7, [6, 13, 2])):
        ours = grader._degrees(features, hidden)
        theirs = made_degrees(features, hidden)
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
        for params in (1, 2, 3):
            masks = made_masks(features, hidden, params_per_feature=params)
            assert all(torch.equal(a, b.to(torch.float64))
                       for a, b in zip(grader._masks(ours, params), masks))
