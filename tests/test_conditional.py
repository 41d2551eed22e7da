"""The conditional DCGAN: labels from the data through the step, the grid, FID, checkpoints, exports and the CLI."""

from __future__ import annotations

import itertools

import pytest
import torch
from kit import assert_same_networks, assert_same_state, make_trainer, notebook_function, plain_side, tiny_config
from PIL import Image

from dcganlib import checkpoint, export_generator, load_generator
from dcganlib.catalog import class_names
from dcganlib.cli import main
from dcganlib.config import CONDITIONAL_D_FEATURES, Config, ConfigError
from dcganlib.data import BatchLoader, DatasetUnavailableError, load_dataset
from dcganlib.models import (
    ConditionalBatchNorm2d,
    Discriminator,
    build_models,
    generate,
    make_noise,
    visible_pixels,
)
from dcganlib.step import conditional_train_step


def conditional(**overrides) -> Config:
    return tiny_config(num_classes=10, **overrides)


def test_a_conditional_generator_draws_each_image_for_its_label():
    generator, discriminator = build_models(Config.from_preset("mnist28", num_classes=10))
    assert sum(isinstance(m, ConditionalBatchNorm2d) for m in generator.modules()) == 3
    z = make_noise(4, 64, seed=0).repeat(2, 1, 1, 1)
    labels = torch.tensor([0, 0, 0, 0, 7, 7, 7, 7])
    with torch.no_grad():  # untrained scales still differ by class: the same z draws another image
        generator.net[0][1].scale.weight[7] += 0.5
    images = generate(generator, z, labels)
    assert images.shape == (8, 1, 28, 28) and not torch.equal(images[:4], images[4:])
    assert torch.equal(images[:4], generate(generator, z[:4], labels[:4]))
    logits, class_logits = discriminator(images, labels)
    assert logits.shape == (8,) and class_logits.shape == (8, 10)
    with pytest.raises(ValueError, match=r"conditional \(10 classes\): pass the label of each image"):
        generator(z)
    with pytest.raises(ValueError, match="pass the label of each image"):
        discriminator(images)


def test_the_projection_adds_how_well_an_image_fits_its_class():
    discriminator = Discriminator(1, 8, 28, num_classes=3).eval()
    images = torch.randn(2, 1, 28, 28)
    features = discriminator.net[:-1](images)
    with torch.no_grad():
        discriminator.class_vectors.weight.zero_()
        plain, _ = discriminator(images, torch.tensor([0, 1]))
        discriminator.class_vectors.weight[1] = 1.0
        projected, _ = discriminator(images, torch.tensor([0, 1]))
    assert torch.equal(plain[0], projected[0])
    torch.testing.assert_close(projected[1] - plain[1], features[1].sum())
    assert visible_pixels(discriminator).shape == (28, 28)


def test_unconditional_networks_are_unchanged():
    generator, discriminator = build_models(Config.from_preset("mnist28"))
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in generator.modules())
    assert not any("class" in name for name in discriminator.state_dict())
    assert generator.num_classes == 0 and discriminator(torch.zeros(2, 1, 28, 28)).shape == (2,)


def test_labelled_batches_carry_the_labels_of_their_images(tmp_path):
    data = load_dataset("mnist-5k", labelled=True)
    assert data.class_names == tuple("0123456789")
    loader = BatchLoader(data, 100, seed=3, labelled=True)
    images, labels = next(iter(loader.epoch(2)))
    order = loader.order(2)[:100]
    assert torch.equal(labels, data.labels[order]) and torch.equal(images, torch.stack([data[i] for i in order]))
    shares = [next(iter(BatchLoader(data, 100, seed=3, labelled=True, rank=r, world_size=2).epoch(2)))
              for r in (0, 1)]
    assert torch.equal(torch.cat([share[1] for share in shares]), labels)  # torchrun ranks split labels like images
    with pytest.raises(ValueError, match="labelled batches need a data set with labels"):
        BatchLoader(load_dataset("folder:" + str(write_folder(tmp_path / "flat", {"": 4}))), 2, labelled=True)


def write_folder(root, counts: dict[str, int]):
    """A folder of small PNGs: `counts` images in each named sub-folder ("" for the folder itself)."""
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("L", (8, 8), color=20 * i).save(root / name / f"{i}.png")
    return root


def test_a_folder_with_one_sub_folder_per_class_is_labelled_by_them(tmp_path):
    root = write_folder(tmp_path / "pets", {"cats": 3, "dogs": 2, "": 1})
    assert class_names(f"folder:{root}") == ("cats", "dogs")
    data = load_dataset(f"folder:{root}", image_size=16, channels=1, labelled=True)
    assert data.class_names == ("cats", "dogs") and data.labels.tolist() == [0, 0, 0, 1, 1]  # the loose image left out
    loader = BatchLoader(data, 5, labelled=True)
    images, labels = next(iter(loader.epoch(0)))
    assert images.shape == (5, 1, 16, 16) and sorted(labels.tolist()) == [0, 0, 0, 1, 1]
    flat = write_folder(tmp_path / "flat", {"": 3})
    with pytest.raises(DatasetUnavailableError, match="has no classes to condition on.*one sub-folder"):
        load_dataset(f"folder:{flat}", labelled=True)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"dataset": "celeba", "channels": 3, "num_classes": 10}, "celeba has no classes to condition on: train it"),
    ({"num_classes": 5}, "mnist-5k has 10 classes, not 5; set num_classes to 10"),
    ({"num_classes": 1}, "must be 0 .unconditional. or a class count of at least 2"),
])
def test_a_conditional_config_needs_the_data_sets_classes(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_preset("mnist28", **overrides)


def test_conditional_sets_the_classes_and_widens_the_course_d():
    config = Config.from_preset("demo", dataset="mnist-5k").conditional()
    assert config.num_classes == 10 and config.d_features == CONDITIONAL_D_FEATURES
    assert Config.from_preset("dcgan64", dataset="fashion-mnist").conditional().d_features == 64
    with pytest.raises(ConfigError, match="celeba has no classes to condition on"):
        Config.from_preset("celeba64").conditional()


def test_a_conditional_run_trains_draws_one_row_per_class_and_resumes_exactly(tmp_path):
    config = conditional(epochs=2, sample_count=20, eval_every=1, eval_samples=200)
    straight = make_trainer(tmp_path / "straight", config)
    straight.fit()
    assert straight.fixed_labels.tolist() == [c for c in range(10) for _ in range(2)] and straight.grid_columns == 2
    assert torch.equal(straight.fixed_noise[0], straight.fixed_noise[2])  # each column keeps its latent
    assert all(fid > 0 for fid in straight.history["epoch"]["fid"])
    saved = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "straight"))
    assert saved["class_names"] == list("0123456789")
    make_trainer(tmp_path / "split", conditional(epochs=1, sample_count=20, eval_every=1, eval_samples=200)).fit()
    resumed = make_trainer(tmp_path / "split", config)
    resumed.fit()
    assert_same_state(straight.state_dict(), resumed.state_dict())


NOTEBOOK_6S_STEP = notebook_function("06_conditional_gan.ipynb", "conditional-train-step", "conditional_step")


@pytest.mark.parametrize("step", [conditional_train_step, NOTEBOOK_6S_STEP], ids=["library", "notebook 6"])
def test_the_conditional_step_in_the_open_equals_the_trainers_in_fp32(tmp_path, step):
    config = conditional(precision="fp32", ema_decay=0, channels_last=False)
    trainer = make_trainer(tmp_path, config)
    generator, discriminator, opt_g, opt_d, noise_rng = plain_side(trainer)
    for real, labels in itertools.islice(trainer.loader.epoch(0), 4):
        z = make_noise(real.size(0), config.z_dim, generator=noise_rng)
        loss_d, loss_g = step(generator, discriminator, opt_g, opt_d, real, z, labels)
        assert torch.equal(torch.stack([loss_d, loss_g]), trainer.train_step(real, labels)[:2])
    assert_same_networks(trainer, generator, discriminator)


def test_an_exported_conditional_generator_keeps_its_classes(tmp_path):
    trainer = make_trainer(tmp_path, conditional(epochs=1))
    trainer.fit()
    loaded = load_generator(export_generator(tmp_path))
    assert loaded.num_classes == 10 and loaded.class_names == tuple("0123456789")
    assert loaded.label("7") == 7 == loaded.label(7)
    labels = torch.tensor([3, 3])
    torch.testing.assert_close(generate(loaded, trainer.fixed_noise[:2], labels),
                               generate(trainer.ema.model, trainer.fixed_noise[:2], labels))
    with pytest.raises(ValueError, match="no class 'ten'; the generator's classes are 0, 1, 2"):
        loaded.label("ten")


def test_unconditional_exports_name_no_classes(tmp_path):
    make_trainer(tmp_path, tiny_config(epochs=1)).fit()
    exported = checkpoint.load_file(export_generator(tmp_path), required=("generator",))
    assert "num_classes" not in exported["architecture"] and "class_names" not in exported


@pytest.mark.slow
def test_the_cli_trains_a_conditional_run_and_samples_the_class_asked_for(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--run-dir", run, "--preset", "demo", "--conditional", "--epochs", "1",
                 "--batch-size", "500"]) == 0
    assert Config.load_yaml(tmp_path / "run" / "config.yaml").num_classes == 10
    assert main(["sample", "--run-dir", run, "--label", "7", "--n", "8", "--out", str(tmp_path / "7.png")]) == 0
    assert (tmp_path / "7.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["sample", "--run-dir", run, "--label", "eleven", "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("error: --label eleven: no class 'eleven'")
