"""Config: presets reproduce their sources, YAML round trip, every bad value names its field."""

import dataclasses
import re
import warnings

import pytest
import torch

from dcganlib.catalog import DATASETS
from dcganlib.config import (
    ARCHITECTURE_FIELDS,
    COMPILE_MODES,
    FIELD_CLASSES,
    PRESETS,
    RUN_CONTROL_FIELDS,
    Config,
    ConfigError,
    fields_of,
    resume_config,
)
from dcganlib.models import build_models, make_noise


def test_presets_match_their_sources():
    assert Config.from_preset("mnist28").architecture() == {
        "image_size": 28, "channels": 1, "z_dim": 64, "g_features": 64, "d_features": 16, "batch_norm": True,
        "spectral_norm": False, "num_classes": 0}
    assert Config.from_preset("dcgan32").z_dim == 100
    assert Config.from_preset("dcgan64").g_features == 64
    celeba = Config.from_preset("celeba64")
    assert (celeba.channels, celeba.image_size, celeba.dataset) == (3, 64, "celeba")
    for name in set(PRESETS) - {"demo"}:  # the sources' optimiser settings; the demo preset is ours
        config = Config.from_preset(name)
        assert (config.lr, config.beta1, config.beta2) == (2e-4, 0.5, 0.999)
        assert config.batch_size == (64 if name == "mnist32" else 128)
    demo = Config.from_preset("demo")
    assert demo.architecture() == Config.from_preset("mnist28").architecture()
    assert (demo.batch_size, demo.lr, demo.lr_d, demo.epochs) == (32, 5e-4, None, 55)


def test_cifar32_is_mnist32_in_colour():
    cifar = Config.from_preset("cifar32")
    assert cifar.architecture() == {**Config.from_preset("mnist32").architecture(), "channels": 3}
    assert (cifar.image_size, cifar.z_dim, cifar.g_features, cifar.d_features) == (32, 100, 64, 64)
    assert (cifar.dataset, cifar.channels) == ("cifar10", DATASETS["cifar10"].channels)
    torch.manual_seed(0)
    generator, discriminator = build_models(cifar)
    images = generator(make_noise(2, cifar.z_dim))
    assert images.shape == (2, 3, 32, 32) and discriminator(images).shape == (2,)


@pytest.mark.parametrize("preset", [name for name, values in PRESETS.items() if values["channels"] == 1])
@pytest.mark.parametrize("dataset", [name for name, info in DATASETS.items() if info.channels == 3])
def test_colour_data_on_a_grey_preset_names_the_fix(preset, dataset):
    match = rf"dataset {dataset} is in colour but preset {preset} is grayscale.*cifar32.*channels=1"
    with pytest.raises(ConfigError, match=match):
        Config.from_preset(preset, dataset=dataset)
    # An explicit channels is the opt-in: grey on purpose, or colour at this preset's size.
    assert Config.from_preset(preset, dataset=dataset, channels=1).channels == 1
    assert Config.from_preset(preset, dataset=dataset, channels=3).channels == 3


def test_matching_channels_need_no_opt_in():
    assert Config.from_preset("mnist28", dataset="fashion-mnist").channels == 1
    assert Config.from_preset("celeba64", dataset="cifar10").channels == 3
    assert Config.from_preset("mnist32", dataset="folder:/tmp/photos").channels == 1  # unknown until read
    assert Config.from_dict({"dataset": "cifar10", "channels": 1}).channels == 1  # saved grey runs still resume


def test_overrides_apply_on_top_of_preset():
    config = Config.from_preset("dcgan64", epochs=3, channels=3)
    assert (config.preset, config.epochs, config.channels, config.image_size) == ("dcgan64", 3, 3, 64)


def test_an_override_of_none_keeps_the_presets_value():
    config = Config.from_preset("demo", epochs=None, batch_size=None, lr=1e-3)
    assert (config.epochs, config.batch_size, config.lr) == (55, 32, 1e-3)


def test_the_run_name_follows_preset_data_set_and_every_setting_but_run_control():
    demo = Config.from_preset("demo", dataset="mnist-5k")
    assert demo.run_name() == "demo-mnist-5k"
    assert Config.from_preset("demo", dataset="mnist-5k", epochs=80, eval_every=5).run_name() == "demo-mnist-5k"
    changed = {Config.from_preset("demo", dataset="mnist-5k", **change).run_name()
               for change in ({"batch_size": 64}, {"seed": 1}, {"augment": "cutout"}, {"g_features": 32})}
    assert len(changed) == 4 and all(re.fullmatch(r"demo-mnist-5k-[0-9a-f]{6}", name) for name in changed)
    assert Config.from_preset("mnist28", dataset="mnist").run_name() == "mnist28-mnist"
    folder = Config.from_preset("celeba64", dataset="folder:/data/My Faces/")
    assert folder.run_name() == "celeba64-folder-My-Faces"


def test_yaml_round_trip(tmp_path):
    config = Config.from_preset("dcgan32", lr=1e-4, lr_d=4e-4, dataset="folder:/tmp/x", ema_decay=0.999)
    path = config.save_yaml(tmp_path / "nested" / "config.yaml")
    assert Config.load_yaml(path) == config


@pytest.mark.parametrize(("field", "value", "message"), [
    ("image_size", 48, r"image_size: 48 .*\(16, 28, 32, 64, 128\)"),
    ("channels", 2, "channels: 2 .*1 .*or 3"),
    ("lr", -1e-3, "lr: .*positive"),
    ("lr_d", 0.0, "lr_d: .*positive"),
    ("batch_size", 0, "batch_size"),
    ("epochs", 2.5, "epochs"),
    ("z_dim", True, "z_dim"),
    ("beta1", 1.0, r"beta1: .*\[0, 1\)"),
    ("label_smoothing", 0.7, "label_smoothing"),
    ("loss", "lsgan", "loss: unknown 'lsgan'.*non-saturating"),
    ("precision", "int8", "precision: unknown"),
    ("dataset", "imagenet", "dataset: unknown 'imagenet'.*mnist-5k.*folder:"),
    ("preset", "biggan", "preset: unknown 'biggan'.*mnist28"),
    ("checkpoint_minutes", -1, "checkpoint_minutes"),
])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        Config(**{field: value})


def test_grey_digits_get_the_offline_fid_and_everything_else_the_standard_one():
    assert Config(eval_every=1).offline_fid and Config(dataset="mnist").offline_fid
    assert not Config(eval_every=1, dataset="cifar10", channels=3).offline_fid
    assert not Config(dataset="mnist", channels=3).offline_fid
    assert not Config(dataset="folder:/my/images").offline_fid


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'dcgan999'.*mnist28"):
        Config.from_preset("dcgan999")


def test_wgan_gp_needs_batch_norm_off():
    with pytest.raises(ConfigError, match="batch_norm"):
        Config(loss="wgan-gp")
    assert Config(loss="wgan-gp", batch_norm=False).loss == "wgan-gp"


def test_unknown_yaml_field(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("image_size: 28\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown config field.*learning_rate"):
        Config.load_yaml(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        Config.load_yaml(path)


def test_compile_mode_is_checked_and_a_resume_may_change_it():
    assert [Config(compile=True, compile_mode=mode).compile_mode for mode in COMPILE_MODES] == list(COMPILE_MODES)
    with pytest.raises(ConfigError, match="compile_mode: unknown 'cudagraphs'.*default, reduce-overhead"):
        Config(compile=True, compile_mode="cudagraphs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run-control field: no "resuming keeps the checkpoint's ..." warning
        resumed = resume_config(Config(compile=True, compile_mode="reduce-overhead"), Config().to_dict())
    assert (resumed.compile, resumed.compile_mode) == (True, "reduce-overhead")


def test_a_hand_written_2e_4_is_a_clear_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("lr: 2e-4\n")  # YAML 1.1 reads this as the string "2e-4"
    with pytest.raises(ConfigError, match=r"lr: '2e-4' must be a number; in YAML write 2.0e-4 or 0.0002"):
        Config.load_yaml(path)
    path.write_text("lr: 2.0e-4\nlr_d: null\n")
    assert Config.load_yaml(path).lr == 2e-4
    with pytest.raises(ConfigError, match="beta1: 'high' must be a number"):
        Config(beta1="high")


def test_every_field_has_one_class_and_the_classes_give_the_resume_lists():
    names = [field.name for field in dataclasses.fields(Config)]
    classes = {name: [kind for kind in FIELD_CLASSES if name in fields_of(kind)] for name in names}
    assert {name: found for name, found in classes.items() if len(found) != 1} == {}
    assert ARCHITECTURE_FIELDS == ("image_size", "channels", "z_dim", "g_features", "d_features", "batch_norm",
                                   "spectral_norm", "num_classes")
    assert sorted(RUN_CONTROL_FIELDS) == sorted(("epochs", "checkpoint_minutes", "keep_checkpoints", "tensorboard",
                                                 "data_root", "compile", "compile_mode", "resident_data", "eval_every",
                                                 "eval_samples", "metrics", "best_metric"))
    with pytest.raises(ValueError, match="unknown field class 'model'.*architecture, run control, recipe"):
        fields_of("model")

