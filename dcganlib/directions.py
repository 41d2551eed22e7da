"""Latent directions that mean something: GANSpace-style principal components, and directions towards a class.

GANSpace (Härkönen et al., NeurIPS 2020) samples many latents, runs PCA on an early layer's activations, and
carries each principal axis back to the latent space by linear regression. The first axes are the changes the
generator makes most often; each comes with the share of the layer's variance it explains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .metrics import classifier_probabilities
from .models import generate, make_noise, through


@dataclass(frozen=True)
class Direction:
    """A unit vector (z_dim,) in latent space and the name of a slider along it."""

    vector: Tensor
    label: str


class _EveryClassInTurn(nn.Module):
    """A conditional generator's first stage, run on latents whose labels go through every class in turn."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.stages, self.num_classes = generator.net[:1], generator.num_classes

    def forward(self, z: Tensor) -> Tensor:
        return through(self.stages, z, torch.arange(len(z), device=z.device) % self.num_classes)


def first_stage(generator: nn.Module) -> nn.Module:
    """The generator's first stage (transposed conv, BatchNorm, ReLU), whose outputs GANSpace analyses; for a
    conditional generator, over samples of every class in turn."""
    net = getattr(generator, "net", None)
    if not isinstance(net, nn.Sequential):
        raise ValueError(f"{type(generator).__name__} has no .net stages: pass layer=<the module to analyse>")
    return _EveryClassInTurn(generator) if getattr(generator, "num_classes", 0) else net[0]


def _unit_rows(vectors: Tensor) -> Tensor:
    """Rows scaled to length 1, each signed so that its largest entry is positive (eigenvector signs are arbitrary)."""
    largest = vectors.gather(1, vectors.abs().argmax(dim=1, keepdim=True))
    return vectors * torch.sign(largest) / vectors.norm(dim=1, keepdim=True)


def principal_directions(
    generator: nn.Module,
    k: int = 4,
    *,
    samples: int = 1000,
    seed: int = 0,
    layer: Callable[[Tensor], Tensor] | None = None,
) -> list[Direction]:
    """The k leading GANSpace directions, labelled "PC1 (12%)" and so on (the share of the layer's variance).

    `layer` maps latents (N, z_dim, 1, 1) to activations; the default is the generator's first stage.
    """
    z_dim = generator.z_dim
    if not 0 < k <= z_dim or samples <= k:
        raise ValueError(f"need 0 < k <= z_dim ({z_dim}) and more samples than k, got k={k}, samples={samples}")
    z = make_noise(samples, z_dim, seed=seed)
    activations = generate(layer if layer is not None else first_stage(generator), z).flatten(1).double()
    centred = activations - activations.mean(dim=0)
    # PCA through the samples' Gram matrix, (samples x samples) however wide the layer is: its eigenvectors are
    # the samples' principal coordinates scaled to length 1, its eigenvalues the variance along each axis.
    variances, coordinates = torch.linalg.eigh(centred @ centred.T)
    top = variances.argsort(descending=True)[:k]
    # Regressing z on those orthonormal coordinates carries each axis back to the latent space: the
    # least-squares solution is z's projection onto each of them.
    z = z.flatten(1).double()
    to_latent = coordinates[:, top].T @ (z - z.mean(dim=0))
    shares = variances[top] / variances.sum()
    return [Direction(vector.float(), f"PC{i + 1} ({share:.0%})")
            for i, (vector, share) in enumerate(zip(_unit_rows(to_latent), shares, strict=True))]


def class_directions(
    generator: nn.Module,
    classes: Sequence[int],
    *,
    classify: Callable[[Tensor], Tensor] = classifier_probabilities,
    samples: int = 1000,
    seed: int = 1,
) -> list[Direction]:
    """Directions "towards c": the mean latent weighted by p(c | G(z)), minus the mean latent.

    `classify` maps images to class probabilities (N, classes); the default is the shipped MNIST classifier.
    """
    if not classes:
        return []
    if getattr(generator, "num_classes", 0):
        raise ValueError("a conditional generator draws the class it is asked for: pass its label instead of "
                         "looking for a direction towards it")
    z = make_noise(samples, generator.z_dim, seed=seed).flatten(1)
    probabilities = classify(generate(generator, z[:, :, None, None]))
    towards = []
    for c in classes:
        if not 0 <= c < probabilities.shape[1]:
            raise ValueError(f"class {c} is not one of the classifier's 0-{probabilities.shape[1] - 1}")
        weights = probabilities[:, c : c + 1]
        towards.append((weights * z).sum(dim=0) / weights.sum() - z.mean(dim=0))
    vectors = torch.stack(towards)
    return [Direction(v / v.norm(), f"towards {c}") for v, c in zip(vectors, classes, strict=True)]


def notebook_directions(generator: nn.Module) -> list[Direction]:
    """Notebook 5's named directions of a digit generator: its first four principal directions and those towards a
    0, a 1 and a 7 (also the directions figure's and the docs site playground's)."""
    return principal_directions(generator, 4) + class_directions(generator, [0, 1, 7])


def direction_sweeps(
    generator: Callable[[Tensor], Tensor], z: Tensor, directions: Sequence[Direction], offsets: Sequence[float]
) -> Tensor:
    """Images (len(directions) * len(offsets), C, H, W): one row per direction, z moved by each offset along it."""
    base = z.reshape(1, -1)
    steps = torch.as_tensor(offsets, dtype=base.dtype).reshape(-1, 1)
    latents = torch.cat([base + steps * d.vector.to(base.dtype) for d in directions])
    return generate(generator, latents[:, :, None, None])
