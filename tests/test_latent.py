from __future__ import annotations

import io

import pytest
import torch
from PIL import Image
from torch import nn

from dcganlib.latent import (
    generate,
    interpolate,
    interpolation_grid,
    latent_directions,
    latent_sliders,
    lerp,
    noise_for_seed,
    slerp,
    vector_arithmetic,
    walk,
)

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


@pytest.fixture
def gen() -> TinyGenerator:
    return TinyGenerator().train()


def reference(gen: TinyGenerator, z: torch.Tensor) -> torch.Tensor:
    """What the generator makes for z in eval mode, computed without the library."""
    gen.eval()
    with torch.no_grad():
        out = gen(z)
    gen.train()
    return out


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


# The widget ---------------------------------------------------------------------------------------------


@pytest.fixture
def explorer(gen):
    return latent_sliders(gen, n_directions=3, seeds=(0, 1), scale=2.0, image_size_px=64)


def test_widget_renders_a_png_of_the_requested_size(explorer):
    png = bytes(explorer.image.value)
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    assert [s.description for s in explorer.direction_sliders] == ["dir 1", "dir 2", "dir 3"]
    assert all(s.min == -2.0 and s.max == 2.0 for s in explorer.direction_sliders)
    assert "application/vnd.jupyter.widget-view+json" in explorer._repr_mimebundle_()


def test_direction_slider_changes_image_and_back_restores_it(explorer, gen):
    original = explorer.image.value
    explorer.direction_sliders[1].value = 1.5
    assert explorer.image.value != original
    expected = noise_for_seed(0, Z_DIM) + 1.5 * latent_directions(Z_DIM, 3)[1].view(1, -1, 1, 1)
    torch.testing.assert_close(explorer.current_latent(), expected)
    explorer.direction_sliders[1].value = 0.0
    assert explorer.image.value == original
    assert gen.training


def test_t_slider_endpoints_are_exactly_the_seeds(explorer, gen):
    for method in ("slerp", "lerp"):
        explorer.method.value = method
        explorer.t_slider.value = 0.0
        assert torch.equal(explorer.current_images(), reference(gen, noise_for_seed(0, Z_DIM)))
        seed_a_png = explorer.image.value
        explorer.t_slider.value = 1.0
        assert torch.equal(explorer.current_images(), reference(gen, noise_for_seed(1, Z_DIM)))
        alone = latent_sliders(gen, n_directions=3, seeds=(1, 0), image_size_px=64)
        assert explorer.image.value == alone.image.value
        assert seed_a_png != alone.image.value


def test_seed_picker_changes_image(explorer):
    before = explorer.image.value
    explorer.seed_picker.value = 42
    assert explorer.image.value != before
    assert torch.equal(explorer.current_latent(), noise_for_seed(42, Z_DIM))


def test_method_changes_midpoint_but_not_endpoints(explorer):
    def render(method: str, t: float) -> bytes:
        explorer.method.value = method
        explorer.t_slider.value = t
        return explorer.image.value

    assert render("slerp", 0.5) != render("lerp", 0.5)
    assert render("slerp", 0.0) == render("lerp", 0.0)
    assert render("slerp", 1.0) == render("lerp", 1.0)


def test_latent_sliders_needs_a_latent_size():
    with pytest.raises(ValueError, match="z_dim"):
        latent_sliders(lambda z: z)
