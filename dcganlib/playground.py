"""The docs site's playground: a generator as a small JSON description and one binary file of float32 weights, which
a plain-JavaScript forward pass runs in the visitor's browser (docs/assets/playground/playground.js).

Each layer is a transposed convolution with BatchNorm's running statistics folded into its weights and bias, then,
for a conditional generator, each class's scale and shift, then ReLU or Tanh: G in eval mode, as `generate` runs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from . import storage
from .directions import Direction, notebook_directions
from .models import ConditionalBatchNorm2d, Generator
from .pretrained import SHIPPED_CONDITIONAL_GENERATOR, load_generator

SHIPPED_MODELS = ("mnist28", "mnist28-conditional")  # the files write_shipped_models writes, by name


def _fold(convolution: nn.ConvTranspose2d, norm: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolution's weight (in, out, k, k) and bias (out) with `norm`'s eval-mode arithmetic folded in."""
    weight = convolution.weight.detach().double()
    bias = (convolution.bias.detach().double() if convolution.bias is not None
            else torch.zeros(weight.shape[1], dtype=torch.float64))
    if norm is None:
        return weight, bias
    inverse = 1 / torch.sqrt(norm.running_var.double() + norm.eps)
    if norm.affine:
        inverse = inverse * norm.weight.detach().double()
    shift = norm.bias.detach().double() if norm.affine else 0.0
    return weight * inverse[None, :, None, None], (bias - norm.running_mean.double()) * inverse + shift


def _layers(generator: Generator) -> list[dict]:
    """The generator's stages in order, each {convolution, norm, conditional norm, activation}."""
    layers: list[dict] = []
    for module in generator.net.modules():
        if isinstance(module, nn.ConvTranspose2d):
            layers.append({"convolution": module, "norm": None, "classes": None, "activation": None})
        elif isinstance(module, ConditionalBatchNorm2d):
            layers[-1]["norm"], layers[-1]["classes"] = module.norm, module
        elif isinstance(module, nn.BatchNorm2d) and layers[-1]["classes"] is None:
            layers[-1]["norm"] = module
        elif isinstance(module, nn.ReLU | nn.Tanh):
            layers[-1]["activation"] = "relu" if isinstance(module, nn.ReLU) else "tanh"
    return layers


def browser_model(generator: Generator, directions: Sequence[Direction] = ()) -> tuple[dict, bytes]:
    """(description, weights): what playground.js needs to run `generator`, with named latent `directions`."""
    chunks: list[bytes] = []

    def stored(tensor: torch.Tensor) -> list[int]:
        """Append `tensor` to the weights file; its [start, length] there, in float32 values."""
        data = tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        start = sum(map(len, chunks)) // 4
        chunks.append(data)
        return [start, len(data) // 4]

    layers = []
    for layer in _layers(generator):
        convolution = layer["convolution"]
        weight, bias = _fold(convolution, layer["norm"])
        description = {"in": convolution.in_channels, "out": convolution.out_channels,
                       "kernel": convolution.kernel_size[0], "stride": convolution.stride[0],
                       "padding": convolution.padding[0], "weight": stored(weight), "bias": stored(bias),
                       "activation": layer["activation"]}
        if layer["classes"] is not None:
            description["scale"] = stored(layer["classes"].scale.weight)
            description["shift"] = stored(layer["classes"].shift.weight)
        layers.append(description)
    model = {"z_dim": generator.z_dim, "image_size": generator.image_size, "channels": generator.channels,
             "class_names": list(generator.class_names) if generator.num_classes else [], "layers": layers,
             "directions": [{"label": d.label, "vector": d.vector.tolist()} for d in directions]}
    return model, b"".join(chunks)


def write_browser_model(generator: Generator, folder: Path, name: str,
                        directions: Sequence[Direction] = ()) -> tuple[Path, Path]:
    """`name`.json and `name`.bin in `folder`: the generator for playground.js."""
    model, weights = browser_model(generator, directions)
    model["weights"] = f"{name}.bin"
    folder.mkdir(parents=True, exist_ok=True)
    storage.write_atomic(folder / f"{name}.bin", lambda file: file.write(weights))
    text = json.dumps(model, separators=(",", ":"))
    storage.write_atomic(folder / f"{name}.json", lambda file: file.write(text.encode("utf-8")))
    return folder / f"{name}.json", folder / f"{name}.bin"


def write_shipped_models(folder: Path) -> list[Path]:
    """The playground's generators: the shipped one with notebook 5's directions, and the conditional one."""
    generator = load_generator()
    paths = write_browser_model(generator, folder, SHIPPED_MODELS[0], notebook_directions(generator))
    paths += write_browser_model(load_generator(SHIPPED_CONDITIONAL_GENERATOR), folder, SHIPPED_MODELS[1])
    return list(paths)
