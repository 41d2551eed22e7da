from __future__ import annotations

import pytest
import torch
from tiny_generator import Z_DIM, reference

from dcganlib.latent import (
    interpolate,
    interpolation_grid,
    latent_directions,
    lerp,
    noise_for_seed,
    slerp,
    vector_arithmetic,
    walk,
)
from dcganlib.models import generate


def pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    z = noise_for_seed(seed, Z_DIM, n=2)
    return z[0], z[1]


@pytest.mark.parametrize("fn", [lerp, slerp])
def test_endpoints_are_exact(fn):
    z0, z1 = pair()
    torch.testing.assert_close(fn(z0, z1, 0.0), z0)
    torch.testing.assert_close(fn(z0, z1, 1.0), z1)
    path = fn(z0, z1, torch.tensor([0.0, 0.5, 1.0]))
    assert path.shape == (3, *z0.shape)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)


def test_slerp_keeps_norm_and_lerp_shrinks_it():
    z0, z1 = pair()
    z1 = z1 * z0.norm() / z1.norm()
    for z in interpolate(z0, z1, steps=9, method="slerp"):
        torch.testing.assert_close(z.norm(), z0.norm())
    mid = interpolate(z0, z1, steps=9, method="lerp")[4]
    assert mid.norm() < 0.9 * z0.norm()


def test_slerp_falls_back_to_lerp_for_parallel_vectors():
    z0 = pair()[0]
    for z1 in (2 * z0, z0.clone(), -z0):
        t = torch.linspace(0, 1, 5)
        out = slerp(z0, z1, t)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, lerp(z0, z1, t))


def test_interpolate_shape_and_unknown_method():
    z0, z1 = pair()
    assert interpolate(z0, z1, steps=5).shape == (5, Z_DIM, 1, 1)
    with pytest.raises(ValueError, match="unknown interpolation method"):
        interpolate(z0, z1, method="cubic")


def test_noise_for_seed_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(1)
    a = noise_for_seed(7, Z_DIM, n=3)
    torch.manual_seed(2)
    b = noise_for_seed(7, Z_DIM, n=3)
    assert a.shape == (3, Z_DIM, 1, 1)
    assert torch.equal(a, b)
    assert not torch.equal(a, noise_for_seed(8, Z_DIM, n=3))
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    noise_for_seed(7, Z_DIM)
    assert torch.equal(torch.rand(4), expected)


def test_latent_directions_are_orthonormal_and_seeded():
    d = latent_directions(Z_DIM, 5, seed=3)
    assert d.shape == (5, Z_DIM)
    torch.testing.assert_close(d @ d.T, torch.eye(5), atol=1e-5, rtol=0)
    assert torch.equal(d, latent_directions(Z_DIM, 5, seed=3))
    assert not torch.allclose(d, latent_directions(Z_DIM, 5, seed=4))
    with pytest.raises(ValueError):
        latent_directions(Z_DIM, Z_DIM + 1)


@pytest.mark.parametrize("start_in_train", [True, False])
def test_generate_restores_mode_and_is_deterministic(gen, start_in_train):
    gen.train(start_in_train)
    z = noise_for_seed(0, Z_DIM, n=4)
    out = generate(gen, z)
    assert gen.training is start_in_train
    assert not out.requires_grad
    assert torch.equal(out, reference(gen, z))


def test_interpolation_grid_rows_run_from_start_to_end(gen):
    starts, ends = noise_for_seed(0, Z_DIM, n=2), noise_for_seed(1, Z_DIM, n=2)
    images = interpolation_grid(gen, starts, ends, steps=5)
    assert images.shape == (10, 1, 16, 16)
    torch.testing.assert_close(images[[0, 5]], reference(gen, starts))
    torch.testing.assert_close(images[[4, 9]], reference(gen, ends))
    assert gen.training


def test_walk_passes_through_every_latent(gen):
    zs = noise_for_seed(5, Z_DIM, n=3)
    images = walk(gen, zs, steps_between=4, method="lerp")
    assert images.shape == (3 + 2 * 4, 1, 16, 16)
    torch.testing.assert_close(images[[0, 5, 10]], reference(gen, zs))
    assert torch.equal(walk(gen, list(zs), steps_between=4, method="lerp"), images)


def test_vector_arithmetic_averages_batches(gen):
    a, b, c = (noise_for_seed(s, Z_DIM, n=3) for s in (1, 2, 3))
    images = vector_arithmetic(gen, a, b, c)
    assert images.shape == (4, 1, 16, 16)
    means = [z.mean(0, keepdim=True) for z in (a, b, c)]
    expected = reference(gen, torch.cat([*means, means[0] - means[1] + means[2]]))
    torch.testing.assert_close(images, expected)
