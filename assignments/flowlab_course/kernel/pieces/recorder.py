"""A trainable Gaussian that records every batch it is asked about (assignment 2's training part).

The student's ``train(flow, data, ...)`` trains a :class:`Recorder`: the batches it sees and the
parameters before each step show the loop's mechanics (batch size, sampling, learning rate,
``zero_grad``) without depending on any coupling layer.  Plain torch.
"""

import torch

_LOG_2PI = 1.8378770664093453


class Recorder(torch.nn.Module):
    """A diagonal Gaussian N(mu, exp(log_sigma)^2) whose ``log_prob`` remembers its inputs."""

    def __init__(self, dim):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        self.log_sigma = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        self.seen = []
        self.snapshots = []

    def log_prob(self, x):
        self.seen.append(x.detach().clone())
        self.snapshots.append(torch.cat([self.mu.detach(), self.log_sigma.detach()]).clone())
        z = (x - self.mu) * torch.exp(-self.log_sigma)
        return (-0.5 * z ** 2 - self.log_sigma - 0.5 * _LOG_2PI).sum(dim=1)

    def nll(self, x):
        return -self.log_prob(x).mean()

    def forward(self, x):
        z = (x - self.mu) * torch.exp(-self.log_sigma)
        return z, -self.log_sigma.sum().expand(x.shape[0])
