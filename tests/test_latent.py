from __future__ import annotations

import pytest
import torch
from tiny_generator import Z_DIM, reference

from dcganlib.latent import (
    interpolate,
    interpolation_grid,
    lerp,
    slerp,
    truncate,
    vector_arithmetic,
    walk,
)
from dcganlib.models import generate, make_noise


def pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    z = make_noise(2, Z_DIM, seed=seed)
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


def test_seeded_noise_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(1)
    a = make_noise(3, Z_DIM, seed=7)
    torch.manual_seed(2)
    b = make_noise(3, Z_DIM, seed=7)
    assert a.shape == (3, Z_DIM, 1, 1)
    assert torch.equal(a, b)
    assert not torch.equal(a, make_noise(3, Z_DIM, seed=8))
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    make_noise(1, Z_DIM, seed=7)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("start_in_train", [True, False])
def test_generate_restores_mode_and_is_deterministic(gen, start_in_train):
    gen.train(start_in_train)
    z = make_noise(4, Z_DIM, seed=0)
    out = generate(gen, z)
    assert gen.training is start_in_train
    assert not out.requires_grad
    assert torch.equal(out, reference(gen, z))


def test_interpolation_grid_rows_run_from_start_to_end(gen):
    starts, ends = make_noise(2, Z_DIM, seed=0), make_noise(2, Z_DIM, seed=1)
    images = interpolation_grid(gen, starts, ends, steps=5)
    assert images.shape == (10, 1, 16, 16)
    torch.testing.assert_close(images[[0, 5]], reference(gen, starts))
    torch.testing.assert_close(images[[4, 9]], reference(gen, ends))
    assert gen.training


def test_walk_passes_through_every_latent(gen):
    zs = make_noise(3, Z_DIM, seed=5)
    images = walk(gen, zs, steps_between=4, method="lerp")
    assert images.shape == (3 + 2 * 4, 1, 16, 16)
    torch.testing.assert_close(images[[0, 5, 10]], reference(gen, zs))
    assert torch.equal(walk(gen, list(zs), steps_between=4, method="lerp"), images)


def test_vector_arithmetic_averages_batches(gen):
    a, b, c = (make_noise(3, Z_DIM, seed=s) for s in (1, 2, 3))
    images = vector_arithmetic(gen, a, b, c)
    assert images.shape == (4, 1, 16, 16)
    means = [z.mean(0, keepdim=True) for z in (a, b, c)]
    expected = reference(gen, torch.cat([*means, means[0] - means[1] + means[2]]))
    torch.testing.assert_close(images, expected)


def unit_pair(dim: int = Z_DIM) -> tuple[torch.Tensor, torch.Tensor]:
    """Two orthogonal unit vectors: the first two basis vectors."""
    eye = torch.eye(dim)
    return eye[0], eye[1]


def angle(u: torch.Tensor, v: torch.Tensor) -> float:
    u, v = u.flatten().double(), v.flatten().double()
    return torch.arccos((u @ v / (u.norm() * v.norm())).clamp(-1, 1)).item()


@pytest.mark.parametrize("t", [0.1, 0.25, 0.5, 0.8])
def test_slerp_of_orthogonal_unit_vectors_walks_the_quarter_circle(t):
    # Between orthogonal unit vectors slerp is cos(t pi/2) a + sin(t pi/2) b; at t = 0.5 that is (a + b) / sqrt 2.
    # A normalised lerp meets it only at t = 0.5: at t = 0.25 it lies 18.4 degrees from a, not 22.5.
    a, b = unit_pair()
    theta = t * torch.pi / 2
    torch.testing.assert_close(slerp(a, b, t), torch.cos(torch.tensor(theta)) * a + torch.sin(torch.tensor(theta)) * b)
    if t == 0.5:
        torch.testing.assert_close(slerp(a, b, t), (a + b) / 2**0.5)


def test_slerp_scales_each_end_by_its_own_sine_weight():
    # Unequal norms: the weights sin((1 - t) omega) / sin omega and sin(t omega) / sin omega apply to z0 and z1.
    a, b = unit_pair()
    out = slerp(2 * a, 3 * b, 1 / 3)
    torch.testing.assert_close(out, 2 * torch.cos(torch.tensor(torch.pi / 6)) * a
                               + 3 * torch.sin(torch.tensor(torch.pi / 6)) * b)


def test_slerp_angles_grow_linearly_with_t():
    # Vectors of equal norm 60 degrees apart: the path's angle from z0 is t * 60 degrees, to z1 the rest.
    a, b = unit_pair()
    z0, z1 = 2 * a, 2 * (0.5 * a + 3**0.5 / 2 * b)
    t = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0])
    path = slerp(z0, z1, t)
    omega = torch.pi / 3
    for z, step in zip(path, t.tolist(), strict=True):
        assert angle(z, z0) == pytest.approx(step * omega, abs=1e-3)
        assert angle(z, z1) == pytest.approx((1 - step) * omega, abs=1e-3)
        assert z.norm().item() == pytest.approx(2.0, rel=1e-6)


def test_slerp_just_inside_the_parallel_limit_is_still_spherical():
    # cos = 0.999 is below the lerp fallback's 0.9995: the midpoint keeps its norm, where lerp's shrinks it.
    a, b = (v.double() for v in unit_pair())
    theta = torch.arccos(torch.tensor(0.999, dtype=torch.float64))
    z1 = torch.cos(theta) * a + torch.sin(theta) * b
    assert slerp(a, z1, 0.5).norm().item() == pytest.approx(1.0, abs=1e-12)
    assert lerp(a, z1, 0.5).norm().item() < 1 - 1e-4


def test_interpolation_keeps_the_input_dtype_and_shape():
    z0, z1 = pair()
    for fn in (lerp, slerp):
        assert fn(z0, z1, 0.3).dtype == torch.float32
        assert fn(z0, z1, torch.tensor([0.3, 0.6])).dtype == torch.float32
    steps = interpolate(z0.view(1, -1, 1, 1), z1.view(1, -1, 1, 1), steps=4, method="lerp")
    torch.testing.assert_close(steps[1].flatten(), (2 * z0 + z1).flatten() / 3)


def test_a_two_dimensional_t_is_refused():
    z0, z1 = pair()
    with pytest.raises(ValueError, match=r"t must be a scalar or a 1-D tensor, got shape \(2, 2\)"):
        slerp(z0, z1, torch.zeros(2, 2))


def test_interpolation_grid_and_walk_refuse_mismatched_or_short_inputs(gen):
    with pytest.raises(ValueError, match="got 2 start latents but 1 end latents"):
        interpolation_grid(gen, make_noise(2, Z_DIM, seed=0), make_noise(1, Z_DIM, seed=1))
    with pytest.raises(ValueError, match="^a walk needs at least two latents$"):
        walk(gen, make_noise(1, Z_DIM, seed=0))
    with pytest.raises(ValueError, match=r"unknown interpolation method 'cubic'; choose one of \['lerp', 'slerp'\]"):
        interpolate(*pair(), method="cubic")


def test_grid_and_walk_defaults_are_eight_slerp_steps(gen):
    starts, ends = make_noise(2, Z_DIM, seed=0), make_noise(2, Z_DIM, seed=1)
    grid = interpolation_grid(gen, starts, ends)
    assert grid.shape == (2 * 8, 1, 16, 16)
    torch.testing.assert_close(grid[:8], reference(gen, interpolate(starts[0], ends[0], 8, "slerp")))
    zs = make_noise(2, Z_DIM, seed=5)  # exactly two latents: the shortest walk
    frames = walk(gen, zs)
    assert frames.shape == (2 + 8, 1, 16, 16)
    torch.testing.assert_close(frames, reference(gen, interpolate(zs[0], zs[1], 10, "slerp")))


def test_grid_and_walk_use_the_method_asked_for(gen):
    starts, ends = make_noise(1, Z_DIM, seed=0), make_noise(1, Z_DIM, seed=1)
    grid = interpolation_grid(gen, starts, ends, steps=5, method="lerp")
    torch.testing.assert_close(grid, reference(gen, interpolate(starts, ends, 5, "lerp")))
    zs = make_noise(3, Z_DIM, seed=5)
    frames = walk(gen, zs, steps_between=3, method="lerp")
    legs = [interpolate(zs[0], zs[1], 5, "lerp")[:-1], interpolate(zs[1], zs[2], 5, "lerp")]
    torch.testing.assert_close(frames, reference(gen, torch.cat(legs)))


def test_default_counts():
    z0, z1 = pair()
    assert interpolate(z0, z1).shape == (8, Z_DIM, 1, 1)
    assert make_noise(1, Z_DIM, seed=0).shape == (1, Z_DIM, 1, 1)


def test_truncation_scales_latents_towards_zero_and_refuses_psi_outside_0_to_1():
    z = make_noise(5, 8, seed=0)
    assert torch.equal(truncate(z, 1.0), z) and torch.equal(truncate(z, 0.0), torch.zeros_like(z))
    torch.testing.assert_close(truncate(z, 0.7).norm(dim=1), 0.7 * z.norm(dim=1))
    for psi in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            truncate(z, psi)
