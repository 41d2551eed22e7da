"""Exploring a generator's latent space: seeded noise, interpolation, walks, vector arithmetic and truncation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .models import generate

# Above this |cosine| the two vectors span no plane to rotate in, so slerp is replaced by lerp.
_PARALLEL_COS = 0.9995


def _weights(t: float | Tensor, z: Tensor) -> Tensor:
    """t as float64, shaped to broadcast over z; a 1-D t adds a leading step dimension."""
    t = torch.as_tensor(t, dtype=torch.float64, device=z.device)
    if t.dim() > 1:
        raise ValueError(f"t must be a scalar or a 1-D tensor, got shape {tuple(t.shape)}")
    return t.reshape(t.shape + (1,) * z.dim())


def lerp(z0: Tensor, z1: Tensor, t: float | Tensor) -> Tensor:
    """Linear interpolation; a 1-D t gives one result per value along a new first dimension."""
    w = _weights(t, z0).to(z0.dtype)
    # (1 - w) * z0 + w * z1 rather than z0 + w * (z1 - z0), so that t = 1 gives exactly z1.
    return (1 - w) * z0 + w * z1


def slerp(z0: Tensor, z1: Tensor, t: float | Tensor) -> Tensor:
    """Spherical interpolation over the flattened vectors; lerp when they are (nearly) parallel."""
    a, b = z0.flatten().double(), z1.flatten().double()
    cos = torch.dot(a, b) / (a.norm() * b.norm())
    if not torch.isfinite(cos) or cos.abs() > _PARALLEL_COS:
        return lerp(z0, z1, t)
    omega = torch.arccos(cos)
    w = _weights(t, z0)
    c0 = (torch.sin((1 - w) * omega) / torch.sin(omega)).to(z0.dtype)
    c1 = (torch.sin(w * omega) / torch.sin(omega)).to(z0.dtype)
    return c0 * z0 + c1 * z1


_METHODS: dict[str, Callable[[Tensor, Tensor, float | Tensor], Tensor]] = {"slerp": slerp, "lerp": lerp}


def _method(name: str) -> Callable[[Tensor, Tensor, float | Tensor], Tensor]:
    if name not in _METHODS:
        raise ValueError(f"unknown interpolation method {name!r}; choose one of {sorted(_METHODS)}")
    return _METHODS[name]


def interpolate(z0: Tensor, z1: Tensor, steps: int = 8, method: str = "slerp") -> Tensor:
    """Latents (steps, z_dim, 1, 1) going from z0 to z1, both ends included."""
    fn = _method(method)
    t = torch.linspace(0.0, 1.0, steps)
    return fn(z0.flatten(), z1.flatten(), t).reshape(steps, -1, 1, 1)


def _as_batch(z: Tensor) -> Tensor:
    """Latent(s) as a batch (n, z_dim, 1, 1), accepting (z_dim,), (z_dim, 1, 1) or a batch."""
    if z.dim() == 4:
        return z
    return z.reshape(1, -1, 1, 1)


def interpolation_grid(
    generator: Callable[[Tensor], Tensor],
    z_starts: Tensor,
    z_ends: Tensor,
    steps: int = 8,
    method: str = "slerp",
) -> Tensor:
    """Images (rows * steps, C, H, W): one row per (start, end) pair; show with nrow=steps."""
    starts, ends = _as_batch(z_starts), _as_batch(z_ends)
    if len(starts) != len(ends):
        raise ValueError(f"got {len(starts)} start latents but {len(ends)} end latents")
    zs = torch.cat([interpolate(a, b, steps, method) for a, b in zip(starts, ends, strict=True)])
    return generate(generator, zs)


def walk(
    generator: Callable[[Tensor], Tensor],
    zs: Tensor | Sequence[Tensor],
    steps_between: int = 8,
    method: str = "slerp",
) -> Tensor:
    """Images along a path through the given latents, with steps_between frames between each pair."""
    points = torch.cat([_as_batch(z) for z in zs]) if not isinstance(zs, Tensor) else _as_batch(zs)
    if len(points) < 2:
        raise ValueError("a walk needs at least two latents")
    # Each leg drops its end point, which is the next leg's start, so no frame is shown twice.
    legs = [
        interpolate(a, b, steps_between + 2, method)[:-1]
        for a, b in zip(points[:-1], points[1:], strict=True)
    ]
    return generate(generator, torch.cat([*legs, points[-1:]]))


def arithmetic_latents(z_a: Tensor, z_b: Tensor, z_c: Tensor) -> Tensor:
    """The latents (4, z_dim, 1, 1) a, b, c and a - b + c, each batch averaged first, as in the DCGAN paper."""
    a, b, c = (_as_batch(z).mean(dim=0, keepdim=True) for z in (z_a, z_b, z_c))
    return torch.cat([a, b, c, a - b + c])


def vector_arithmetic(generator: Callable[[Tensor], Tensor], z_a: Tensor, z_b: Tensor, z_c: Tensor) -> Tensor:
    """Images (4, C, H, W) of a, b, c and a - b + c (see `arithmetic_latents`)."""
    return generate(generator, arithmetic_latents(z_a, z_b, z_c))


def truncate(z: Tensor, psi: float) -> Tensor:
    """The truncation trick: latents pulled towards the mean of their distribution, 0, as psi * z. psi = 1 leaves z
    as it is; smaller values trade variety for typical-looking images (psi = 0: every z becomes the average one)."""
    if not 0.0 <= psi <= 1.0:
        raise ValueError(f"truncation psi must lie between 0 and 1 (1: no truncation), got {psi}")
    return z * psi
