"""A generator as an ONNX file, for runtimes without PyTorch: onnxruntime in Python, onnxruntime-web in a browser.

The graph takes `z` (N, z_dim) float32 and, for a conditional generator, `labels` (N,) int64, and returns `images`
(N, channels, size, size) in [-1, 1], for any N. It is G in eval mode (BatchNorm with its running statistics,
folded into the convolutions by the exporter), and the file's metadata name its sizes and classes.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from . import storage
from .models import Generator

ONNX_INSTALL = 'pip install "dcganlib[onnx]" (or pip install onnx onnxscript)'
OPSET = 18


class _FlatLatents(nn.Module):
    """G taking latents as (N, z_dim) rather than (N, z_dim, 1, 1): what a caller without PyTorch has."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        z = z[:, :, None, None]
        return self.generator(z) if labels is None else self.generator(z, labels)


def onnx_metadata(generator: Generator) -> dict[str, str]:
    """What a caller of the file needs besides the graph: sizes, channels and class names, as strings."""
    return {"dcganlib.z_dim": str(generator.z_dim), "dcganlib.image_size": str(generator.image_size),
            "dcganlib.channels": str(generator.channels), "dcganlib.num_classes": str(generator.num_classes),
            "dcganlib.class_names": json.dumps(list(generator.class_names))}


def export_onnx(generator: Generator, path: str | Path) -> Path:
    """Write `generator`, in eval mode, as an ONNX file at `path` (whole or not at all); `generator` itself is left
    as it was (its mode and device)."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError(f"exporting to ONNX needs the onnx and onnxscript packages: {ONNX_INSTALL}") from error
    flat = _FlatLatents(copy.deepcopy(generator)).cpu().eval()  # the caller's G keeps its device and mode
    example = (torch.zeros(2, generator.z_dim),)
    names = ["z"]
    if generator.num_classes:
        example, names = (*example, torch.zeros(2, dtype=torch.int64)), ["z", "labels"]
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():  # z and labels share the batch axis on purpose: no need to say so
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints")
        program = torch.onnx.export(flat, example, dynamo=True, opset_version=OPSET, input_names=names,
                                    output_names=["images"], dynamic_shapes={name: {0: batch} for name in names},
                                    verbose=False)
    model = program.model_proto
    onnx.helper.set_model_props(model, onnx_metadata(generator))
    path = Path(path)
    storage.write_atomic(path, lambda file: file.write(model.SerializeToString()))
    return path
