"""Generators exported to ONNX: onnxruntime draws what torch draws, for any batch, from G in eval mode."""

import json
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from kit import make_trainer, tiny_config

from dcganlib.cli import main
from dcganlib.models import generate, make_noise
from dcganlib.onnx_export import export_onnx
from dcganlib.pretrained import SHIPPED_CONDITIONAL_GENERATOR, load_generator

TOLERANCE = 1e-5  # float32 with BatchNorm folded into the convolutions: about 1e-6 apart


def onnx_images(path, z: torch.Tensor, labels: torch.Tensor | None = None) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"z": z.flatten(1).numpy()}
    if labels is not None:
        feeds["labels"] = labels.numpy()
    return session.run(["images"], feeds)[0]


def test_the_onnx_generator_draws_what_torch_draws_in_eval_mode(tmp_path):
    generator = load_generator().train()  # a G left in training mode: the file still holds eval mode
    path = export_onnx(generator, tmp_path / "g.onnx")
    assert generator.training  # the caller's G is left as it was
    for count in (1, 5):
        z = make_noise(count, generator.z_dim, seed=count)
        expected = generate(generator, z).numpy()  # eval mode: BatchNorm's running statistics
        np.testing.assert_allclose(onnx_images(path, z), expected, atol=TOLERANCE, rtol=0)
    model = onnx.load(path)
    operators = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in operators and "ConvTranspose" in operators  # folded into the convolutions
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata["dcganlib.z_dim"] == "64" and metadata["dcganlib.num_classes"] == "0"


def test_a_conditional_onnx_generator_draws_the_requested_classes(tmp_path):
    generator = load_generator(SHIPPED_CONDITIONAL_GENERATOR)
    path = export_onnx(generator, tmp_path / "conditional.onnx")
    z, labels = make_noise(10, generator.z_dim, seed=3), torch.arange(10)
    np.testing.assert_allclose(onnx_images(path, z, labels), generate(generator, z, labels).numpy(), atol=TOLERANCE,
                               rtol=0)
    metadata = {prop.key: prop.value for prop in onnx.load(path).metadata_props}
    assert json.loads(metadata["dcganlib.class_names"]) == list(generator.class_names)


def test_without_the_onnx_package_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install \"dcganlib\[onnx\]\""):
        export_onnx(load_generator(), tmp_path / "g.onnx")
    assert not (tmp_path / "g.onnx").exists()


def test_the_cli_exports_a_run_to_onnx_beside_its_checkpoints(tmp_path, capsys):
    make_trainer(tmp_path / "run", tiny_config(epochs=1)).fit()
    assert main(["export", "--run-dir", str(tmp_path / "run"), "--format", "onnx"]) == 0
    path = tmp_path / "run" / "generator.onnx"
    assert capsys.readouterr().out.strip() == str(path)
    generator = load_generator(tmp_path / "run")
    z = make_noise(3, generator.z_dim, seed=0)
    np.testing.assert_allclose(onnx_images(path, z), generate(generator, z).numpy(), atol=TOLERANCE, rtol=0)
