"""Named latent directions: GANSpace principal directions, directions towards a class, sweeps and their figure."""

from __future__ import annotations

import re

import pytest
import torch
from tiny_generator import TinyGenerator
from torch import nn

from dcganlib.directions import Direction, class_directions, direction_sweeps, first_stage, principal_directions
from dcganlib.metrics import classifier_probabilities
from dcganlib.models import Generator, generate, make_noise
from dcganlib.pretrained import load_generator
from dcganlib.viz import plot_directions

Z_DIM = 6
SCALES = torch.tensor([5.0, 3.0, 2.0, 1.5, 1.5, 1.5])  # the last three keep 15% of the variance outside the top 3


def _rotation(seed: int = 3) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(Z_DIM, Z_DIM, generator=torch.Generator().manual_seed(seed)))
    return q


class LatentImage(nn.Module):
    """A stand-in generator that draws its latent as a 1 x 1 x z_dim image, so a classifier can read z directly."""

    z_dim = Z_DIM

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(len(z), 1, 1, Z_DIM)


def test_principal_directions_recover_a_known_linear_layer():
    # Activations a = z @ R diag(s): their principal axes are the unit axes, ordered by s, and the latent change
    # that moves the i-th of them is R's i-th column. A wrong order, no mapping back, or a transposed map fails.
    rotation = _rotation()
    mixing = rotation * SCALES

    def layer(z):
        return z.flatten(1) @ mixing

    found = principal_directions(LatentImage(), k=3, samples=1500, layer=layer)
    for i, direction in enumerate(found):
        expected = rotation[:, i] * torch.sign(rotation[rotation[:, i].abs().argmax(), i])
        assert direction.vector.shape == (Z_DIM,)
        assert direction.vector.norm().item() == pytest.approx(1.0, abs=1e-6)
        assert torch.dot(direction.vector, expected) > 0.99, f"PC{i + 1} is not R's column {i}"
    shares = SCALES**2 / (SCALES**2).sum()
    for i, (direction, share) in enumerate(zip(found, shares, strict=False)):
        name, percent = re.fullmatch(r"(PC\d) \((\d+)%\)", direction.label).groups()
        assert name == f"PC{i + 1}" and int(percent) == pytest.approx(100 * share.item(), abs=3), direction.label


def test_principal_directions_are_signed_and_seeded_reproducibly():
    first = principal_directions(LatentImage(), k=2, layer=lambda z: z.flatten(1) @ (_rotation() * SCALES))
    again = principal_directions(LatentImage(), k=2, layer=lambda z: z.flatten(1) @ (_rotation() * SCALES))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.vector, b.vector) and a.label == b.label
        assert a.vector[a.vector.abs().argmax()] > 0, "each direction points so that its largest entry is positive"


def test_principal_directions_default_to_the_first_stage_of_a_generator():
    torch.manual_seed(0)
    generator = Generator(z_dim=16, channels=1, features=8, image_size=28)
    assert first_stage(generator) is generator.net[0]
    found = principal_directions(generator, k=2, samples=300)
    explicit = principal_directions(generator, k=2, samples=300, layer=generator.net[0])
    assert [d.label for d in found] == [d.label for d in explicit]
    assert all(torch.equal(a.vector, b.vector) for a, b in zip(found, explicit, strict=True))
    assert generator.training, "finding directions left the generator in eval mode"
    with pytest.raises(ValueError, match="layer="):
        principal_directions(TinyGenerator(), k=2)
    with pytest.raises(ValueError, match="0 < k"):
        principal_directions(generator, k=0)


def test_class_directions_point_where_the_classifier_says_the_class_is():
    # Class 1 is "z[2] > 0" and class 0 its opposite: the directions must be +e2 and -e2.
    def classify(images):
        p1 = torch.sigmoid(8 * images.flatten(1)[:, 2])
        return torch.stack([1 - p1, p1], dim=1)

    towards_0, towards_1 = class_directions(LatentImage(), [0, 1], classify=classify, samples=4000)
    axis = torch.eye(Z_DIM)[2]
    torch.testing.assert_close(towards_1.vector, axis, atol=0.08, rtol=0)
    torch.testing.assert_close(towards_0.vector, -axis, atol=0.08, rtol=0)
    assert (towards_0.label, towards_1.label) == ("towards 0", "towards 1")
    assert class_directions(LatentImage(), [], classify=classify) == []
    with pytest.raises(ValueError, match="class 2"):
        class_directions(LatentImage(), [2], classify=classify)


def test_towards_a_digit_makes_the_shipped_generator_draw_it():
    generator = load_generator()
    (towards_7,) = class_directions(generator, [7])
    z = make_noise(100, generator.z_dim, seed=123)
    before = classifier_probabilities(generate(generator, z))[:, 7]
    after = classifier_probabilities(generate(generator, z + 3 * towards_7.vector.view(1, -1, 1, 1)))[:, 7]
    assert before.mean() < 0.25 and after.mean() > 0.6, (before.mean(), after.mean())


def test_direction_sweeps_move_z_along_each_direction():
    generator = TinyGenerator()
    directions = [Direction(torch.eye(8)[i], f"axis {i}") for i in (0, 5)]
    z = make_noise(1, 8, seed=0)
    offsets = [-2.0, 0.0, 1.5]
    images = direction_sweeps(generator, z, directions, offsets)
    assert images.shape == (6, 1, 16, 16)
    for row, direction in enumerate(directions):
        for column, offset in enumerate(offsets):
            expected = generate(generator, z + offset * direction.vector.view(1, -1, 1, 1))[0]
            torch.testing.assert_close(images[row * 3 + column], expected)


def test_plot_directions_labels_each_row(tmp_path):
    generator = TinyGenerator()
    directions = [Direction(torch.eye(8)[i], label) for i, label in enumerate(["PC1 (40%)", "towards 3"])]
    path = tmp_path / "directions.png"
    figure = plot_directions(generator, directions, make_noise(1, 8, seed=0), offsets=(-1, 0, 1), path=path)
    assert path.stat().st_size > 0
    assert [ax.get_ylabel() for ax in figure.axes] == ["PC1 (40%)", "towards 3"]
    assert [tick.get_text() for tick in figure.axes[-1].get_xticklabels()] == ["-1", "+0", "+1"]
