"""In-process tests of assignment 3's trusted grader (image flows), on a LocalBridge.

The setup and solution cells of the source notebook run in a fresh namespace; the hidden tests
(``flowlab_course.graders.assignment3``) probe it through the same kernel-side code and wire format
as under nbgrader.  Checked here:

* the solution passes every part, and the untouched release fails every part;
* every catalogue mistake of assignment 3 fails its OWN part, at every one of ``FLOWLAB_REPEATS``
  (default 20) gradings with fresh random inputs, and passes every other part (cross-part
  isolation: the coupling parts use grader-made masks, the multi-scale part grader-made blocks);
* correct solutions written in other styles pass (``pixel_unshuffle``, ``torch.where``, float64
  helpers, boolean masks inside the coupling, ``chunk``, debug prints and tqdm on stderr);
* failure messages are sentences in the lecture's terms, never tracebacks.
"""

from __future__ import annotations

import os

import matplotlib
import pytest

from catalogue import CATALOGUE
from local_grading import grade, namespace, parts, source
from nbgrader_course import patch

matplotlib.use("Agg")

from flowlab_course.graders.errors import GradingFailure  # noqa: E402

ASSIGNMENT = "03_image_flows"
REPEATS = int(os.environ.get("FLOWLAB_REPEATS", "20"))


SOURCE = source(ASSIGNMENT)
PARTS = parts(SOURCE)
MISTAKES = CATALOGUE[ASSIGNMENT]
_namespace = namespace


def _grade(ns: dict, part: str) -> GradingFailure | None:
    """The failure of ``part`` (None if it passes)."""
    return grade("assignment3", ns, part)




ALTERNATIVES = {
    # issue 27: styles that must also pass the float32, the large and the deep cases
    "strided_slices_meshgrid_and_cat": [
        ("    b, c, h, w = x.shape\n    z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)\n"
         "    return z.reshape(b, 4 * c, h // 2, w // 2)",
         "    b, c, h, w = x.shape\n"
         "    blocks = [x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]\n"
         "    return torch.stack(blocks, dim=2).reshape(b, 4 * c, h // 2, w // 2)"),
        ("    i = torch.arange(height).reshape(-1, 1)\n    j = torch.arange(width).reshape(1, -1)\n"
         "    return ((i + j) % 2 == parity).float().reshape(1, 1, height, width)",
         "    i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing=\"ij\")\n"
         "    return ((i + j + parity + 1) % 2).to(torch.get_default_dtype())[None, None]"),
        ("    first = torch.arange(channels) < (channels + 1) // 2\n    mask = first if parity == 0 else ~first\n"
         "    return mask.float().reshape(1, channels, 1, 1)",
         "    k = (channels + 1) // 2\n"
         "    mask = torch.cat([torch.ones(k), torch.zeros(channels - k)])\n"
         "    mask = mask if parity == 0 else 1 - mask\n"
         "    return mask.view(1, -1, 1, 1)"),
    ],
    "while_loop_multiscale_and_log2": [
        ("    latents = []\n    total = x.new_zeros(x.shape[0])\n    h = x\n"
         "    for i, block in enumerate(blocks):\n        h, logdet = block(h)\n"
         "        total = total + logdet\n        if i < len(blocks) - 1:\n"
         "            half = h.shape[1] // 2\n            latents.append(h[:, :half])\n"
         "            h = h[:, half:]\n    latents.append(h)\n    return latents, total",
         "    latents, logdets, h = [], [], x\n    remaining = list(blocks)\n"
         "    while remaining:\n        h, logdet = remaining.pop(0)(h)\n"
         "        logdets.append(logdet)\n        if remaining:\n"
         "            z_i, h = h.chunk(2, dim=1)\n            latents.append(z_i)\n"
         "    return latents + [h], torch.stack(logdets).sum(dim=0)"),
        ("    log_prob_x = log_prob_y - num_dims * math.log(num_levels)\n"
         "    return -log_prob_x / (num_dims * math.log(2))",
         "    nats = -(log_prob_y - num_dims * math.log(num_levels)) / num_dims\n"
         "    return nats / math.log(2.0)"),
    ],
    "float32_dequantize": [
        ("    x = x.float() if not x.is_floating_point() else x\n    return (x + torch.rand_like(x)) / num_levels",
         "    return (x.float() + torch.rand(x.shape)) / num_levels"),
    ],
    "pixel_unshuffle": [
        ("    b, c, h, w = x.shape\n    z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)\n"
         "    return z.reshape(b, 4 * c, h // 2, w // 2)",
         "    return torch.nn.functional.pixel_unshuffle(x, 2)"),
        ("    b, c4, h, w = z.shape\n    x = z.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)\n"
         "    return x.reshape(b, c4 // 4, 2 * h, 2 * w)",
         "    return torch.nn.functional.pixel_shuffle(z, 2)"),
    ],
    "loops_and_slices": [
        ("    b, c, h, w = x.shape\n    z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)\n"
         "    return z.reshape(b, 4 * c, h // 2, w // 2)",
         "    parts = [x[:, :, i::2, j::2] for i in range(2) for j in range(2)]\n"
         "    return torch.stack(parts, dim=2).flatten(1, 2)"),
        ("    b, c4, h, w = z.shape\n    x = z.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)\n"
         "    return x.reshape(b, c4 // 4, 2 * h, 2 * w)",
         "    b, c4, h, w = z.shape\n    x = z.new_empty(b, c4 // 4, 2 * h, 2 * w)\n"
         "    for k in range(4):\n        x[:, :, k // 2::2, k % 2::2] = z[:, k::4]\n    return x"),
    ],
    "where_and_float64_masks": [
        ("    i = torch.arange(height).reshape(-1, 1)\n    j = torch.arange(width).reshape(1, -1)\n"
         "    return ((i + j) % 2 == parity).float().reshape(1, 1, height, width)",
         "    ii, jj = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')\n"
         "    m = torch.where((ii + jj) % 2 == parity, 1.0, 0.0).double()\n"
         "    return m[None, None]"),
        ("    first = torch.arange(channels) < (channels + 1) // 2\n    mask = first if parity == 0 else ~first\n"
         "    return mask.float().reshape(1, channels, 1, 1)",
         "    keep = math.ceil(channels / 2)\n"
         "    m = torch.cat([torch.ones(keep, dtype=torch.float64), torch.zeros(channels - keep, dtype=torch.float64)])\n"
         "    m = m if parity == 0 else 1 - m\n    return m.view(1, -1, 1, 1)"),
    ],
    "boolean_where_coupling": [
        ("        b = self.mask\n        t, s = self.conditioner(b * x).chunk(2, dim=1)\n"
         "        y = b * x + (1 - b) * (x * torch.exp(s) + t)\n"
         "        logdet = ((1 - b) * s).reshape(x.shape[0], -1).sum(dim=1)",
         "        keep = self.mask.bool().expand_as(x)\n"
         "        t, s = self.conditioner(torch.where(keep, x, torch.zeros_like(x))).chunk(2, dim=1)\n"
         "        s = torch.where(keep, torch.zeros_like(s), s)\n"
         "        y = torch.where(keep, x, x * s.exp() + t)\n"
         "        logdet = s.flatten(1).sum(-1)"),
        ("        b = self.mask\n        t_inv, s_inv = self.conditioner(b * y).chunk(2, dim=1)\n"
         "        x = b * y + (1 - b) * (y - t_inv) * torch.exp(-s_inv)\n"
         "        logdet = -((1 - b) * s_inv).reshape(y.shape[0], -1).sum(dim=1)",
         "        keep = self.mask.bool().expand_as(y)\n"
         "        t, s = self.conditioner(y * keep).chunk(2, dim=1)\n"
         "        s = s.masked_fill(keep, 0.0)\n"
         "        x = torch.where(keep, y, (y - t) / s.exp())\n"
         "        logdet = -torch.einsum('bchw->b', s)"),
    ],
    "rand_log2_chunk_and_stderr": [
        ("    x = x.float() if not x.is_floating_point() else x\n    return (x + torch.rand_like(x)) / num_levels",
         "    import sys\n    print('dequantizing', tuple(x.shape), file=sys.stderr)\n"
         "    u = torch.rand(x.shape, dtype=torch.float64)\n    return ((x.double() + u) / num_levels).to(x.dtype)"),
        ("    log_prob_x = log_prob_y - num_dims * math.log(num_levels)\n"
         "    return -log_prob_x / (num_dims * math.log(2))",
         "    print('debug: bpd of', log_prob_y.shape)\n"
         "    return math.log2(num_levels) - log_prob_y / (num_dims * math.log(2))"),
        ("    latents = []\n    total = x.new_zeros(x.shape[0])\n    h = x\n    for i, block in enumerate(blocks):\n"
         "        h, logdet = block(h)\n        total = total + logdet\n        if i < len(blocks) - 1:\n"
         "            half = h.shape[1] // 2\n            latents.append(h[:, :half])\n            h = h[:, half:]\n"
         "    latents.append(h)\n    return latents, total",
         "    from tqdm.auto import tqdm\n    import logging\n    logging.getLogger('student').warning('multi-scale')\n"
         "    latents, total, h = [], 0, x\n    for block in tqdm(blocks[:-1], desc='scales'):\n"
         "        h, ld = block(h)\n        total = total + ld\n        z, h = h.chunk(2, dim=1)\n"
         "        latents.append(z)\n    h, ld = blocks[-1](h)\n    return latents + [h], total + ld"),
    ],
}


@pytest.mark.parametrize("style", sorted(ALTERNATIVES))
def test_alternative_correct_style_passes(style):
    nb = SOURCE
    for old, new in ALTERNATIVES[style]:
        nb = patch(nb, old, new)
    ns = _namespace(nb)
    failures = {p: str(e) for p in PARTS if (e := _grade(ns, p)) is not None}
    assert failures == {}


def test_boolean_mask_is_caught_in_the_masks_part_not_the_coupling():
    """Issue 12: a boolean mask used to break the NEXT part; now it costs the masks part only."""
    ns = _namespace(patch(SOURCE, "return mask.float().reshape(1, channels, 1, 1)",
                          "return mask.reshape(1, channels, 1, 1)"))
    err = _grade(ns, "masks")
    assert err is not None and "floating-point" in str(err)
    assert _grade(ns, "masked_forward") is None and _grade(ns, "masked_inverse") is None


def test_mask_wrong_at_a_single_position_is_named():
    ns = _namespace(patch(
        SOURCE, "return ((i + j) % 2 == parity).float().reshape(1, 1, height, width)",
        "m = ((i + j) % 2 == parity).float()\n    if height == 7 and width > 1:\n        m[3, 1] = 1 - m[3, 1]\n"
        "    return m.reshape(1, 1, height, width)"))
    err = _grade(ns, "masks")
    assert err is not None and "(i, j) = (3, 1)" in str(err)


def test_detached_conditioner_is_named_in_its_part():
    mistake = next(m for m in MISTAKES if m.name == "masked_conditioner_detached")
    err = _grade(_namespace(patch(SOURCE, mistake.old, mistake.new)), "masked_forward")
    assert err is not None and "gradient" in str(err)
