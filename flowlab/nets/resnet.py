r"""Convolutional conditioners for image couplings.

A coupling layer on images needs a network :math:`\theta(\cdot)` that maps an image-shaped
tensor (the kept part :math:`x_A`, possibly with a context) to an image-shaped tensor of the
same height and width holding the coupling parameters (a shift :math:`t` and a log-scale
:math:`s` per transformed value).  The network never has to be invertible: the coupling's
structure gives invertibility and a triangular Jacobian for free.

:class:`ResNet` is a small residual network of 3x3 convolutions:

.. math::

    h_0 = W_{\text{in}} * x, \qquad
    h_{k+1} = h_k + W_{k,2} * \sigma(W_{k,1} * \sigma(h_k)), \qquad
    \theta(x) = W_{\text{out}} * \sigma(h_K),

where :math:`*` is a same-padded convolution and :math:`\sigma` a ReLU.  The last convolution
:math:`W_{\text{out}}` starts at zero (weights and bias) so that :math:`\theta(x) = 0` at
initialisation: every coupling then starts as the identity map, the flow starts as
:math:`f(x) = x`, and deep stacks train stably (the trick of Glow, Kingma & Dhariwal 2018).

No batch normalisation: it would make a sample's output depend on the other samples of the
batch, which breaks the per-sample density :math:`\log p(x)`.

**Dropout** (``dropout=p``) zeroes each hidden feature of :math:`\sigma(h_K)` with
probability :math:`p` in training mode only -- a regulariser for small image sets.  It changes
the conditioner, never the coupling's structure, so every training-mode pass is still an exact
invertible map with an exact log-determinant; but a forward and an inverse pass draw different
masks, so invert and sample in ``eval()`` mode (as the trainer's validation and
``Flow.sample`` callers do).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ResNet", "ResidualBlock"]


class ResidualBlock(nn.Module):
    r"""Pre-activation residual block :math:`h + W_2 * \sigma(W_1 * \sigma(h))`.

    Args:
        channels: channels of the input and the output (a residual block keeps them).
        kernel_size: odd kernel size of both convolutions (same padding).

    Example:
        >>> import torch
        >>> ResidualBlock(8)(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        """Build the network; the arguments are described in the class docstring."""
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.act = nn.ReLU()

    def forward(self, h: Tensor) -> Tensor:
        return h + self.conv2(self.act(self.conv1(self.act(h))))


class ResNet(nn.Module):
    r"""Residual conv net :math:`\theta: \mathbb{R}^{C_{in}\times H\times W} \to
    \mathbb{R}^{C_{out}\times H\times W}` with a zero-initialised output layer.

    Args:
        in_channels: channels of the input (the conditioning part, plus any context).
        out_channels: channels of the output (e.g. ``2 * C`` for a shift and a log-scale).
        hidden_channels: width of the hidden feature maps.
        blocks: number of residual blocks (0 gives conv -> ReLU -> conv, Glow's shallow net).
        kernel_size: odd kernel size of every convolution (same padding keeps H and W).
        zero_init_last: start the output layer at zero so that :math:`\theta \equiv 0`.
        dropout: probability of zeroing a hidden feature before the output layer, in
            training mode only (0 = none).

    Example:
        >>> import torch
        >>> net = ResNet(2, 4, hidden_channels=16, blocks=1)
        >>> net(torch.randn(5, 2, 8, 8)).shape
        torch.Size([5, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        blocks: int = 2,
        kernel_size: int = 3,
        zero_init_last: bool = True,
        dropout: float = 0.0,
    ) -> None:
        """Build the network; the arguments are described in the class docstring."""
        super().__init__()
        for name, value in [
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("hidden_channels", hidden_channels),
        ]:
            if int(value) != value or value < 1:
                raise ValueError(f"ResNet: {name} must be a positive integer, got {value!r}")
        if int(blocks) != blocks or blocks < 0:
            raise ValueError(f"ResNet: blocks must be a non-negative integer, got {blocks!r}")
        if kernel_size % 2 != 1:
            raise ValueError(
                f"ResNet: kernel_size must be odd so that same padding keeps H and W, "
                f"got {kernel_size}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ResNet: dropout must lie in [0, 1), got {dropout!r}")
        pad = kernel_size // 2
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.conv_in = nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=pad)
        self.blocks = nn.Sequential(
            *[ResidualBlock(hidden_channels, kernel_size) for _ in range(blocks)]
        )
        self.act = nn.ReLU()
        # no parameters: checkpoints of nets without dropout load into nets with it
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv_out = nn.Conv2d(hidden_channels, out_channels, kernel_size, padding=pad)
        if zero_init_last:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNet expects a batch of images (batch, {self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        return self.conv_out(self.dropout(self.act(self.blocks(self.conv_in(x)))))
