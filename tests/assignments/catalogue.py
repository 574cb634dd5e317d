"""The catalogue of typical mistakes: patches to each assignment's solution notebook.

Each entry is ``(name, part, old, new)``: replacing ``old`` by ``new`` in the solution (it must
occur exactly once) gives a submission with one typical mistake, which must lose the points of
``part`` (a ``grade_id``) and of no other part.
"""

from __future__ import annotations

from typing import NamedTuple


class Mistake(NamedTuple):
    name: str
    part: str
    old: str
    new: str


A1 = [
    Mistake("density_no_support", "density_uniform",
            "return torch.where(inside, 2 * x, torch.zeros_like(x))", "return 2 * x"),
    Mistake("density_wrong_direction_jacobian", "density_uniform",
            "return torch.where(inside, 2 * x, torch.zeros_like(x))",
            "return torch.where(inside, 0.5 / x.abs().sqrt(), torch.zeros_like(x))"),
    Mistake("lognormal_no_volume_correction", "density_lognormal",
            "log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - torch.log(safe)",
            "log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)"),
    Mistake("lognormal_correction_sign", "density_lognormal",
            "log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) - torch.log(safe)",
            "log_p = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) + torch.log(safe)"),
    Mistake("leaky_logdet_not_summed", "leaky_forward",
            "return z, log_deriv.reshape(x.shape[0], -1).sum(dim=1)", "return z, log_deriv"),
    Mistake("leaky_logdet_sign", "leaky_forward",
            "torch.full_like(x, math.log(a)))", "torch.full_like(x, -math.log(a)))"),
    Mistake("leaky_inverse_multiplies", "leaky_inverse",
            "x = torch.where(z >= 0, z, z / a)", "x = torch.where(z >= 0, z, z * a)"),
    Mistake("leaky_inverse_logdet_sign", "leaky_inverse",
            "torch.full_like(z, -math.log(a)))", "torch.full_like(z, math.log(a)))"),
    Mistake("triangular_full_matrix", "triangular_forward",
            "L = torch.tril(self.weight)\n        z = x @ L.T + self.bias",
            "L = self.weight\n        z = x @ L.T + self.bias"),
    Mistake("triangular_log_without_abs", "triangular_forward",
            "logabsdet = torch.log(torch.diagonal(L).abs()).sum()\n        return z,",
            "logabsdet = torch.log(torch.diagonal(L)).sum()\n        return z,"),
    Mistake("triangular_logdet_summed_over_batch", "triangular_forward",
            "return z, logabsdet.expand(x.shape[0])",
            "return z, logabsdet.expand(x.shape[0]) * x.shape[0]"),
    Mistake("triangular_inverse_shift_after_solve", "triangular_inverse",
            "x = torch.linalg.solve_triangular(L, (z - self.bias).T, upper=False).T",
            "x = torch.linalg.solve_triangular(L, z.T, upper=False).T - self.bias"),
    Mistake("triangular_inverse_logdet_sign", "triangular_inverse",
            "logabsdet = -torch.log(torch.diagonal(L).abs()).sum()",
            "logabsdet = torch.log(torch.diagonal(L).abs()).sum()"),
    Mistake("permutation_inverse_reapplies_perm", "permutation",
            "return z[:, torch.argsort(self.perm)]", "return z[:, self.perm]"),
]

A2 = [
    Mistake("additive_inverse_adds", "additive_inverse",
            "x[:, ~self.mask] = z_b - self.conditioner(z_a)",
            "x[:, ~self.mask] = z_b + self.conditioner(z_a)"),
    Mistake("additive_conditions_on_x_b", "additive_forward",
            "z[:, ~self.mask] = x_b + self.conditioner(x_a)",
            "z[:, ~self.mask] = x_b + self.conditioner(x_b)"),
    Mistake("affine_logdet_sign", "affine_forward",
            "return z, s.sum(dim=1)", "return z, -s.sum(dim=1)"),
    Mistake("affine_logdet_not_summed_per_sample", "affine_forward",
            "return z, s.sum(dim=1)", "return z, s.sum().expand(x.shape[0])"),
    Mistake("affine_forgets_scale_logdet", "affine_forward",
            "return z, s.sum(dim=1)", "return z, x.new_zeros(x.shape[0])"),
    Mistake("affine_s_t_swapped", "affine_forward",
            "s, t = self.conditioner(x_a).chunk(2, dim=1)",
            "t, s = self.conditioner(x_a).chunk(2, dim=1)"),
    Mistake("affine_inverse_exp_s", "affine_inverse",
            "(z_b - t_inv) * torch.exp(-s_inv)", "(z_b - t_inv) * torch.exp(s_inv)"),
    Mistake("affine_inverse_wrong_order", "affine_inverse",
            "(z_b - t_inv) * torch.exp(-s_inv)", "z_b * torch.exp(-s_inv) - t_inv"),
    Mistake("realnvp_mask_parity_not_swapped", "realnvp",
            "        mask = ~mask\n", ""),
    Mistake("train_maximises_nll", "training",
            "loss = -flow.log_prob(batch).mean()", "loss = flow.log_prob(batch).mean()"),
    Mistake("train_never_steps", "training",
            "        optimizer.step()\n", ""),
]

CATALOGUE = {"01_change_of_variables": A1, "02_coupling": A2}
