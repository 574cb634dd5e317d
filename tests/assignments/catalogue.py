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

A3 = [
    Mistake("squeeze_channel_order", "squeeze",
            "permute(0, 1, 3, 5, 2, 4)", "permute(0, 3, 5, 1, 2, 4)"),
    Mistake("unsqueeze_inconsistent_with_squeeze", "unsqueeze",
            "permute(0, 1, 4, 2, 5, 3)", "permute(0, 1, 4, 3, 5, 2)"),
    Mistake("checkerboard_parity_swapped", "masks",
            "return ((i + j) % 2 == parity).float()", "return ((i + j) % 2 != parity).float()"),
    Mistake("channel_mask_floor_half", "masks",
            "first = torch.arange(channels) < (channels + 1) // 2",
            "first = torch.arange(channels) < channels // 2"),
    Mistake("masked_t_s_swapped", "masked_forward",
            "t, s = self.conditioner(b * x).chunk(2, dim=1)",
            "s, t = self.conditioner(b * x).chunk(2, dim=1)"),
    Mistake("masked_logdet_counts_kept_part", "masked_forward",
            "logdet = ((1 - b) * s).reshape(x.shape[0], -1).sum(dim=1)",
            "logdet = s.reshape(x.shape[0], -1).sum(dim=1)"),
    Mistake("masked_conditioner_sees_everything", "masked_forward",
            "t, s = self.conditioner(b * x).chunk(2, dim=1)",
            "t, s = self.conditioner(x).chunk(2, dim=1)"),
    Mistake("masked_inverse_exp_s", "masked_inverse",
            "(y - t_inv) * torch.exp(-s_inv)", "(y - t_inv) * torch.exp(s_inv)"),
    Mistake("dequantization_divides_by_255", "dequantize",
            "return (x + torch.rand_like(x)) / num_levels", "return (x + torch.rand_like(x)) / (num_levels - 1)"),
    Mistake("dequantization_without_noise", "dequantize",
            "return (x + torch.rand_like(x)) / num_levels", "return (x + 0.5) / num_levels"),
    Mistake("bpd_forgets_log_k", "bits_per_dim",
            "log_prob_x = log_prob_y - num_dims * math.log(num_levels)", "log_prob_x = log_prob_y"),
    Mistake("bpd_in_nats", "bits_per_dim",
            "return -log_prob_x / (num_dims * math.log(2))", "return -log_prob_x / num_dims"),
    Mistake("multiscale_only_last_logdet", "multiscale",
            "total = total + logdet", "total = logdet"),
    Mistake("multiscale_factors_out_wrong_half", "multiscale",
            "latents.append(h[:, :half])\n            h = h[:, half:]",
            "latents.append(h[:, half:])\n            h = h[:, :half]"),
]

A4 = [
    Mistake("actnorm_init_wrong_axis", "actnorm_init",
            "self.loc.copy_(x.mean(dim=(0, 2, 3)))\n                self.log_scale.copy_(torch.log(x.std(dim=(0, 2, 3))))",
            "self.loc.copy_(x.mean(dim=(2, 3)).mean(0) * 0 + x.mean())\n"
            "                self.log_scale.copy_(torch.log(x.std()).expand(x.shape[1]))"),
    Mistake("actnorm_init_log_scale_sign", "actnorm_init",
            "self.log_scale.copy_(torch.log(x.std(dim=(0, 2, 3))))",
            "self.log_scale.copy_(-torch.log(x.std(dim=(0, 2, 3))))"),
    Mistake("actnorm_reinitialises_every_call", "actnorm_init",
            "            self.initialized = True\n", ""),
    Mistake("actnorm_logdet_without_pixels", "actnorm_forward",
            "return z, (-pixels * self.log_scale.sum()).expand(x.shape[0])",
            "return z, (-self.log_scale.sum()).expand(x.shape[0])"),
    Mistake("actnorm_logdet_sign", "actnorm_forward",
            "return z, (-pixels * self.log_scale.sum()).expand(x.shape[0])",
            "return z, (pixels * self.log_scale.sum()).expand(x.shape[0])"),
    Mistake("actnorm_inverse_order", "actnorm_inverse",
            "x = z * torch.exp(log_scale) + loc", "x = (z + loc) * torch.exp(log_scale)"),
    Mistake("lu_lower_diagonal_not_one", "conv_weight",
            "L = torch.tril(self.lower, -1) + eye", "L = torch.tril(self.lower)"),
    Mistake("lu_sign_forgotten", "conv_weight",
            "torch.diag(self.sign * torch.exp(self.log_abs_diag))", "torch.diag(torch.exp(self.log_abs_diag))"),
    Mistake("conv_logdet_without_pixels", "conv_forward",
            "return z, (pixels * self.log_abs_diag.sum()).expand(x.shape[0])",
            "return z, self.log_abs_diag.sum().expand(x.shape[0])"),
    Mistake("conv_inverse_uses_transpose", "conv_inverse",
            "W_inv = torch.linalg.inv(self.weight())", "W_inv = self.weight().T"),
    Mistake("temperature_scales_x", "temperature",
            "z = temperature * eps\n    x, _ = flow.inverse(z)",
            "z = eps\n    x, _ = flow.inverse(z)\n    x = temperature * x"),
    Mistake("temperature_squared", "temperature",
            "z = temperature * eps", "z = temperature**2 * eps"),
]

CATALOGUE = {"01_change_of_variables": A1, "02_coupling": A2, "03_image_flows": A3, "04_glow": A4}
