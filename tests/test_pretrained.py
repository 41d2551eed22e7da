"""Tests for dcganlib.pretrained: exported generators, and loaders that refuse what is not one."""

from __future__ import annotations

import re

import pytest
import torch
from hostile import Hostile

from dcganlib import checkpoint, runs
from dcganlib.checkpoint import CheckpointError, save_checkpoint
from dcganlib.models import Generator
from dcganlib.pretrained import export_generator, load_generator

ARCHITECTURE = {"image_size": 16, "channels": 1, "z_dim": 4, "g_features": 4, "d_features": 4, "batch_norm": True}


def weights(seed: int) -> dict:
    torch.manual_seed(seed)
    return Generator(4, 1, 4, 16, True).state_dict()


def checkpoint_state(ema: bool) -> dict:
    return {"epoch": 2, "generator": weights(0), "ema_generator": weights(1) if ema else None,
            "discriminator": {}, "opt_g": {}, "opt_d": {}, "config": {**ARCHITECTURE, "lr": 2e-4}, "history": {}}


def same_weights(generator: Generator, expected: dict) -> bool:
    return all(torch.equal(value, expected[key]) for key, value in generator.state_dict().items())


@pytest.mark.parametrize("ema", [True, False])
def test_export_and_load_sample_from_the_ema_weights_when_kept(tmp_path, ema):
    save_checkpoint(checkpoint_state(ema), tmp_path)
    expected = weights(1 if ema else 0)
    from_run = load_generator(tmp_path)
    assert not from_run.training and same_weights(from_run, expected)

    exported = export_generator(tmp_path)
    assert exported == runs.generator_path(tmp_path)
    saved = torch.load(exported, weights_only=True)
    assert saved["architecture"] == ARCHITECTURE and saved["source"] == checkpoint.checkpoint_name(2)
    assert same_weights(load_generator(exported), expected)
    assert same_weights(load_generator(runs.checkpoint_path(tmp_path, 2)), expected)


def test_a_hostile_file_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "generator.pt"
    torch.save({"generator": Hostile(marker), "architecture": ARCHITECTURE}, hostile)
    with pytest.raises(CheckpointError, match=r"Generator file .*generator\.pt is unusable.*more than tensors"):
        load_generator(hostile)
    assert not marker.exists()


@pytest.mark.parametrize(("content", "reason"), [
    ([1, 2, 3], "it holds a list, not a dict"),
    ({"weights": torch.zeros(1)}, "it lacks the keys generator"),
    ({"generator": weights(0)}, "it names no architecture (missing image_size"),
    ({"generator": weights(0), "architecture": {**ARCHITECTURE, "g_features": 8}}, "weights do not fit"),
    (b"not a torch file", "it is damaged"),
])
def test_files_that_are_no_generator_give_one_clear_error(tmp_path, content, reason):
    path = tmp_path / "thing.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path} is unusable") + ".*" + re.escape(reason)):
        load_generator(path)


def test_the_shipped_generator_loads():
    generator = load_generator()
    assert not generator.training and generator.z_dim > 0
