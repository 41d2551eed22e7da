"""Tests for dcganlib.pretrained: exported generators, and loaders that refuse what is not one."""

from __future__ import annotations

import re

import pytest
import torch
from hostile import Hostile

from dcganlib import runs
from dcganlib.checkpoint import CheckpointError, save_checkpoint
from dcganlib.models import GENERATOR_FIELDS, Generator
from dcganlib.pretrained import export_generator, load_generator
from dcganlib.runs import RunDir

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
    assert exported == RunDir(tmp_path).generator
    saved = torch.load(exported, weights_only=True)
    assert saved["architecture"] == {name: ARCHITECTURE[name] for name in GENERATOR_FIELDS}
    assert saved["source"] == runs.checkpoint_name(2)
    assert same_weights(load_generator(exported), expected)
    assert same_weights(load_generator(RunDir(tmp_path).checkpoint(2)), expected)


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


OTHER_ARCHITECTURE = {"image_size": 32, "channels": 3, "z_dim": 5, "g_features": 6, "d_features": 4,
                      "batch_norm": False}


def test_the_recorded_architecture_is_the_one_built(tmp_path):
    # Every size differs from ARCHITECTURE's and from the Generator defaults: a loader that ignored one would fail.
    torch.manual_seed(0)
    generator = Generator(5, 3, 6, 32, False)
    save_checkpoint({"epoch": 1, "generator": generator.state_dict(), "ema_generator": None, "discriminator": {},
                     "opt_g": {}, "opt_d": {}, "config": {**OTHER_ARCHITECTURE, "lr": 2e-4}, "history": {}}, tmp_path)
    exported = torch.load(export_generator(tmp_path, tmp_path / "small.pt"), weights_only=True)
    # The generator's own sizes only: D's width and spectral norm do not shape it.
    assert exported["architecture"] == {name: OTHER_ARCHITECTURE[name] for name in GENERATOR_FIELDS}
    assert exported["epoch"] == 1
    loaded = load_generator(tmp_path / "small.pt")
    assert loaded.z_dim == 5 and same_weights(loaded, generator.state_dict())
    z = torch.randn(2, 5, 1, 1)
    out = loaded(z)
    assert out.shape == (2, 3, 32, 32)
    assert torch.equal(out, generator.eval()(z))


def test_a_trained_runs_export_samples_like_its_ema_generator(tmp_path):
    from dcganlib.config import Config
    from dcganlib.models import generate
    from dcganlib.train import Trainer

    config = Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=500, sample_count=4, epochs=1,
                                ema_decay=0.9)
    trainer = Trainer(config, tmp_path, progress=False, log=lambda message: None)
    trainer.fit()
    loaded = load_generator(export_generator(tmp_path))
    assert same_weights(loaded, trainer.ema.model.state_dict())
    assert not same_weights(loaded, trainer.generator.state_dict())  # the average, not the last step's weights
    z = torch.randn(3, config.z_dim, 1, 1)
    torch.testing.assert_close(generate(loaded, z), generate(trainer.ema.model, z))  # up to memory layout


@pytest.mark.parametrize("where", ["architecture", "ema_generator"])
def test_hostile_objects_anywhere_in_a_generator_file_are_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    content = {"generator": weights(0), "architecture": ARCHITECTURE, where: Hostile(marker)}
    path = tmp_path / "generator.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"is unusable.*more than tensors"):
        load_generator(path)
    assert not marker.exists()


def test_a_hostile_checkpoint_in_a_run_dir_is_skipped_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    folder = RunDir(tmp_path).checkpoint_dir
    folder.mkdir(parents=True)
    hostile = {**checkpoint_state(ema=False), "ema_generator": Hostile(marker)}
    torch.save(hostile, folder / runs.checkpoint_name(3))
    with pytest.warns(UserWarning, match="ckpt_epoch_0003"), pytest.raises(FileNotFoundError, match="train first"):
        load_generator(tmp_path)
    assert not marker.exists()
