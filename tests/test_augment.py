"""DiffAugment's transforms: each does exactly what it says, per image, reproducibly, and lets gradients through."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcganlib.augment import AUGMENTATIONS, colour, cutout, diff_augment, translation


def _images(n: int = 64, channels: int = 1, size: int = 16) -> torch.Tensor:
    """Images with no zero pixel, so whatever an augmentation blanks is visible."""
    return 0.5 + torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1))


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image moved down by dy and right by dx, zeros coming in."""
    h, w = image.shape[-2:]
    padded = F.pad(image, [w, w, h, h])
    return padded[..., h - dy : 2 * h - dy, w - dx : 2 * w - dx]


def test_translation_shifts_each_image_by_at_most_an_eighth_with_zeros_coming_in():
    x = _images(size=16)
    out = translation(x, torch.Generator().manual_seed(0))
    limit = 2  # round(16 * 0.125)
    shifts = []
    for image, moved in zip(x, out, strict=True):
        found = [(dy, dx) for dy in range(-limit - 1, limit + 2) for dx in range(-limit - 1, limit + 2)
                 if torch.equal(_shifted(image, dy, dx), moved)]
        assert len(found) == 1, f"not a single zero-filled shift of its input: {found}"
        shifts.append(found[0])
    assert max(max(abs(dy), abs(dx)) for dy, dx in shifts) == limit, "shifts never reach the 1/8 limit"
    assert {dy for dy, _ in shifts} == set(range(-limit, limit + 1)), "vertical shifts do not cover the range"
    assert {dx for _, dx in shifts} == set(range(-limit, limit + 1)), "horizontal shifts do not cover the range"


def test_cutout_blanks_one_square_of_half_the_side_clipped_at_the_edges():
    x = _images(n=200, channels=3, size=16)
    out = cutout(x, torch.Generator().manual_seed(0))
    full_squares = 0
    for image, cut in zip(x, out, strict=True):
        blank = (cut == 0).all(dim=0)
        assert torch.equal(cut[:, ~blank], image[:, ~blank]), "cutout changed pixels outside its square"
        rows, cols = blank.any(dim=1).nonzero().flatten(), blank.any(dim=0).nonzero().flatten()
        height, width = len(rows), len(cols)
        assert blank.sum() == height * width, "the blanked pixels are not one rectangle"
        assert 1 <= height <= 8 and 1 <= width <= 8
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
        if 0 < rows[0] and rows[-1] < 15 and 0 < cols[0] and cols[-1] < 15:
            assert (height, width) == (8, 8), "a square inside the image is not half the side"
            full_squares += 1
    assert full_squares > 20


def test_colour_is_brightness_then_saturation_then_contrast_per_image():
    x = _images(n=8, channels=3, size=4)
    out = colour(x, torch.Generator().manual_seed(5))
    draws = torch.Generator().manual_seed(5)
    brightness, saturation, contrast = (torch.rand(8, 1, 1, 1, generator=draws) for _ in range(3))
    expected = x + (brightness - 0.5)
    mean = expected.mean(dim=1, keepdim=True)
    expected = (expected - mean) * (2 * saturation) + mean
    mean = expected.mean(dim=(1, 2, 3), keepdim=True)
    expected = (expected - mean) * (contrast + 0.5) + mean
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_augmentations_are_differentiable_and_reproducible(name):
    x = _images(n=16, channels=3).requires_grad_()
    first = AUGMENTATIONS[name](x, torch.Generator().manual_seed(3))
    (first * torch.arange(first.numel()).view_as(first)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, f"{name} blocks gradients to its input"
    again = AUGMENTATIONS[name](x, torch.Generator().manual_seed(3))
    assert torch.equal(first, again), f"{name} is not reproducible from its generator's seed"
    other = AUGMENTATIONS[name](x, torch.Generator().manual_seed(4))
    assert not torch.equal(first, other), f"{name} ignores its generator"


def test_diff_augment_applies_the_policy_in_order():
    x = _images(n=16, channels=3)
    out = diff_augment(x, ["translation", "cutout"], torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    torch.testing.assert_close(out, cutout(translation(x, g), g))
    assert diff_augment(x, []) is x
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        diff_augment(x, ["flip"])
