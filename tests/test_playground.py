"""The playground's generators (dcganlib.playground): the format playground.js reads, checked with the same arithmetic
in numpy against PyTorch. The page itself runs in tests/test_browser.py."""

import json

import numpy as np
import pytest
import torch

from dcganlib.models import generate, make_noise
from dcganlib.playground import SHIPPED_MODELS, browser_model, write_shipped_models
from dcganlib.pretrained import SHIPPED_CONDITIONAL_GENERATOR, load_generator


def run_browser_model(model: dict, weights: bytes, z: np.ndarray, label: int = 0) -> np.ndarray:
    """playground.js's arithmetic in numpy (float64): the image (C, H, W) in [-1, 1] for one latent `z`."""
    values = np.frombuffer(weights, dtype="<f4")
    x = np.asarray(z, dtype=np.float64).reshape(-1, 1, 1)
    for layer in model["layers"]:
        start, length = layer["weight"]
        weight = values[start:start + length].reshape(layer["in"], layer["out"], layer["kernel"], layer["kernel"])
        start, length = layer["bias"]
        x = _transposed_convolution(x, weight.astype(np.float64), layer["stride"], layer["padding"])
        x += values[start:start + length][:, None, None]
        if "scale" in layer:
            (s0, sl), (h0, hl) = layer["scale"], layer["shift"]
            x = (x * values[s0:s0 + sl].reshape(-1, layer["out"])[label][:, None, None]
                 + values[h0:h0 + hl].reshape(-1, layer["out"])[label][:, None, None])
        x = np.maximum(x, 0) if layer["activation"] == "relu" else np.tanh(x)
    return x


def _transposed_convolution(x: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    channels, height, width = x.shape
    kernel = weight.shape[2]
    size = ((height - 1) * stride + kernel, (width - 1) * stride + kernel)
    out = np.zeros((weight.shape[1], *size))
    for y in range(height):
        for x_ in range(width):
            contribution = np.tensordot(x[:, y, x_], weight, axes=(0, 0))  # (out, k, k)
            out[:, y * stride:y * stride + kernel, x_ * stride:x_ * stride + kernel] += contribution
    return out[:, padding:size[0] - padding, padding:size[1] - padding]


@pytest.mark.parametrize("conditional", [False, True])
def test_the_folded_layers_draw_what_the_generator_draws_in_eval_mode(conditional):
    generator = load_generator(SHIPPED_CONDITIONAL_GENERATOR if conditional else None).train()
    model, weights = browser_model(generator)
    assert generator.training  # reading the weights leaves the generator as it was
    z = make_noise(3, generator.z_dim, seed=7)
    labels = torch.tensor([2, 5, 9]) if conditional else None
    expected = generate(generator, z, labels).numpy()
    for index in range(3):
        label = int(labels[index]) if conditional else 0
        drawn = run_browser_model(model, weights, z[index].flatten().numpy(), label)
        np.testing.assert_allclose(drawn, expected[index], atol=1e-5, rtol=0)


def test_the_site_gets_both_shipped_generators_with_the_unconditional_ones_directions(tmp_path):
    paths = write_shipped_models(tmp_path)
    assert sorted(path.name for path in paths) == sorted(f"{name}.{suffix}" for name in SHIPPED_MODELS
                                                         for suffix in ("json", "bin"))
    plain = json.loads((tmp_path / "mnist28.json").read_text())
    conditional = json.loads((tmp_path / "mnist28-conditional.json").read_text())
    labels = [d["label"] for d in plain["directions"]]
    assert [label.split(" (")[0] for label in labels] == ["PC1", "PC2", "PC3", "PC4", "towards 0", "towards 1",
                                                          "towards 7"]
    assert all(len(d["vector"]) == plain["z_dim"] for d in plain["directions"])
    assert plain["class_names"] == [] and conditional["class_names"] == [str(digit) for digit in range(10)]
    assert (tmp_path / plain["weights"]).stat().st_size == 4 * sum(
        layer[key][1] for layer in plain["layers"] for key in ("weight", "bias"))
