"""A deterministic stand-in generator for the latent-space and slider tests."""

import torch
from torch import nn

Z_DIM = 8


class TinyGenerator(nn.Module):
    """Deterministic stand-in: Linear + Tanh to 1x16x16; dropout makes a forgotten eval() visible."""

    def __init__(self, z_dim: int = Z_DIM) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.fc = nn.Linear(z_dim, 16 * 16)
        self.drop = nn.Dropout(0.5)
        rng = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.fc.weight.copy_(0.4 * torch.randn(self.fc.weight.shape, generator=rng))
            self.fc.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.drop(self.fc(z.flatten(1)))).view(len(z), 1, 16, 16)


def reference(gen: TinyGenerator, z: torch.Tensor) -> torch.Tensor:
    """What the generator makes for z in eval mode, computed without the library."""
    gen.eval()
    with torch.no_grad():
        out = gen(z)
    gen.train()
    return out
