"""One config dataclass for model, data, optimiser and training; presets as data; YAML load/save."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import yaml

from . import storage
from .augment import AUGMENTATIONS
from .catalog import DATASETS, FOLDER_PREFIX, class_names, no_classes_message
from .losses import LOSSES as LOSS_TABLE
from .scores import METRICS as METRIC_TABLE

IMAGE_SIZES = (16, 28, 32, 64, 128)
LOSSES = tuple(LOSS_TABLE)  # non-saturating, minimax, hinge, wgan-gp
RENAMED = {"fid_every": "eval_every", "fid_samples": "eval_samples"}  # fields of earlier versions: today's names
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SEEDINGS = ("hashed", "offset")  # how the random streams come from the seed (seeds.stream_seed)
# torch.compile modes; the last two replay the step as CUDA graphs on a GPU (fewer kernel launches).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
CHANNELS = (1, 3)  # grayscale or RGB
CONDITIONAL_D_FEATURES = 32  # the narrowest D a conditional run gets (Config.conditional): twice the course D

# Every Config field belongs to one class, and the class is its resume rule (train.resolve_resume_config):
ARCHITECTURE = "architecture"  # fixes the networks' shapes: a checkpoint loads only into the same values
RUN_CONTROL = "run control"  # how long to train and how to store it: a resumed run may change it freely
RECIPE = "recipe"  # how the networks learn: a resumed run keeps the checkpoint's value (and warns) to stay exact
FIELD_CLASSES = (ARCHITECTURE, RUN_CONTROL, RECIPE)

# Each preset reproduces a well-known setup; everything not named keeps the Config default
# (Adam lr 2e-4, betas (0.5, 0.999), batch 128).
PRESETS: dict[str, dict] = {
    # Course-style 28 px MNIST GAN: kernels 3/4, stride 2, small D so it does not overpower G.
    "mnist28": {"image_size": 28, "channels": 1, "z_dim": 64, "g_features": 64, "d_features": 16},
    # 32 px DCGAN with G filters 1024/512/256 (D mirrors them).
    "dcgan32": {"image_size": 32, "channels": 1, "z_dim": 100, "g_features": 256, "d_features": 256},
    # The 32 px DCGAN layout at a quarter of dcgan32's width (256/128/64), at batch 64: more updates per epoch.
    "mnist32": {"image_size": 32, "channels": 1, "z_dim": 100, "g_features": 64, "d_features": 64, "batch_size": 64},
    # `make demo`: the course net with 4x the updates per epoch (batch 32) and bigger steps (lr 5e-4 for G and D),
    # which leave the course settings' one-grey-blob phase within about 10 epochs on the 5,000 digits.
    "demo": {"image_size": 28, "channels": 1, "z_dim": 64, "g_features": 64, "d_features": 16, "batch_size": 32,
             "lr": 5e-4, "epochs": 55},
    # mnist32's layout in colour for CIFAR-10, at the paper's batch of 128.
    "cifar32": {"image_size": 32, "channels": 3, "z_dim": 100, "g_features": 64, "d_features": 64,
                "dataset": "cifar10"},
    # The 64 px DCGAN net in dcgan.torch's layout (PyTorch's tutorial's): 4x4 kernels, 64 base features doubled per
    # layer (the paper's own code: a fully connected projection of z, 5x5 kernels, 128 base features).
    "dcgan64": {"image_size": 64, "channels": 1, "z_dim": 100, "g_features": 64, "d_features": 64},
    # dcgan64 for colour faces.
    "celeba64": {"image_size": 64, "channels": 3, "z_dim": 100, "g_features": 64, "d_features": 64,
                 "dataset": "celeba"},
}


class ConfigError(ValueError):
    """A config value is out of range; the message names the field and what is allowed."""


def _grey_preset_message(dataset: str, preset: str) -> str:
    colour = [n for n, values in PRESETS.items() if values.get("channels") == 3]
    colour.sort(key=lambda n: PRESETS[n].get("dataset") != dataset)  # presets made for this data set first
    return (f"dataset {dataset} is in colour but preset {preset} is grayscale (channels 1): use preset "
            f"{' or '.join(colour)}, or pass channels=1 to train on grey images on purpose (channels=3 for colour)")


def _field(default, field_class: str, flag: str | None = None, choices: tuple | None = None):
    """A Config field with its class; a `flag` help text also makes it a `train` option (`--batch-size`)."""
    if field_class not in FIELD_CLASSES:
        raise ValueError(f"unknown field class {field_class!r}; use one of {', '.join(FIELD_CLASSES)}")
    metadata = {"class": field_class}
    if flag is not None:
        metadata["flag"] = flag
    if choices is not None:
        metadata["choices"] = choices
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class Config:
    """Everything a run needs; saved as `config.yaml` in the run dir and inside every checkpoint.

    `batch_size` is the global batch: the images behind one optimizer step. Under `torchrun --nproc-per-node N`
    each process takes a disjoint batch_size / N of every batch, so 2 processes at batch_size 128 (64 each) see the
    same images per step as one process at 128, and the learning rate keeps its meaning on any number of GPUs.
    """

    # Each field: default, class (ARCHITECTURE, RUN_CONTROL or RECIPE), and for a `train` option its help text.
    # --- model ---
    preset: str = _field("mnist28", RECIPE)  # the preset these values came from (informational once built)
    image_size: int = _field(28, ARCHITECTURE)  # 28 (course net) or a power of two from 16 to 128 (DCGAN net)
    channels: int = _field(1, ARCHITECTURE,  # 1 for digits, 3 for colour images
                           flag="1 trains grey, 3 colour (default: the preset's)", choices=CHANNELS)
    z_dim: int = _field(64, ARCHITECTURE)  # length of the noise vector fed to G
    g_features: int = _field(64, ARCHITECTURE)  # G width: channels of its last hidden layer (doubled towards the input)
    d_features: int = _field(16, ARCHITECTURE)  # D width: channels of its first layer (doubled towards the output)
    batch_norm: bool = _field(True, ARCHITECTURE)  # BatchNorm in G and D (off for WGAN-GP, whose penalty is per sample)
    # spectral normalisation of D's convolutions (Miyato et al. 2018): caps how much each can stretch its input
    spectral_norm: bool = _field(False, ARCHITECTURE, flag="spectral normalisation of D's convolutions")
    # > 0: a conditional GAN over this many classes of the data set's labels (conditional BatchNorm in G, a
    # projection D); 0: unconditional
    num_classes: int = _field(0, ARCHITECTURE)

    # --- data ---
    # mnist-5k (offline), mnist, fashion-mnist, cifar10, celeba or folder:<path>
    dataset: str = _field("mnist-5k", RECIPE, flag=f"{', '.join(DATASETS)} or folder:<path>")
    # where downloads and prepared images are kept; "": MyDrive/dcgan/data on Colab (they outlive the runtime),
    # ./data elsewhere
    data_root: str = _field("", RUN_CONTROL, flag="where data sets and their prepared images are kept (default: "
                            "MyDrive/dcgan/data on Colab, ./data elsewhere)")
    # keep the images on the GPU as uint8 when they fit in half its free memory (else in host memory)
    resident_data: bool = _field(True, RUN_CONTROL)

    # --- optimiser ---
    lr: float = _field(2e-4, RECIPE,  # Adam learning rate for G (DCGAN paper)
                       flag="Adam learning rate (D's too, unless a config sets lr_d)")
    # D's learning rate; None = same as lr (set it for two time-scale updates)
    lr_d: float | None = _field(None, RECIPE)
    beta1: float = _field(0.5, RECIPE)  # the paper's momentum: 0.9 made training oscillate
    beta2: float = _field(0.999, RECIPE)

    # --- training ---
    # images per optimizer step in all: under torchrun each of N processes takes batch_size / N of every batch
    batch_size: int = _field(128, RECIPE, flag="images per step, across all processes under torchrun "
                             "(default: the preset's)")
    epochs: int = _field(5, RUN_CONTROL,  # total epochs; a resumed run continues up to this number
                         flag="total epochs; a resumed run continues up to this")
    seed: int = _field(0, RECIPE,  # seeds weights, noise and data order; a resumed run restores the exact RNG states
                       flag="seeds weights, noise and data order")
    # how each random stream's seed comes from `seed` (seeds.stream_seed): "hashed"; "offset" for runs whose
    # checkpoints predate this field, which resume with it
    seeding: str = _field("hashed", RECIPE)
    # non-saturating, minimax, hinge or wgan-gp
    loss: str = _field("non-saturating", RECIPE, flag="the GAN loss", choices=LOSSES)
    label_smoothing: float = _field(0.0, RECIPE)  # one-sided: real targets become 1 - label_smoothing
    gp_weight: float = _field(10.0, RECIPE)  # gradient-penalty weight for wgan-gp
    # DiffAugment of every image D sees, real and fake, in both steps: comma list of colour, translation, cutout
    augment: str = _field("", RECIPE, flag="DiffAugment of D's inputs for small data sets, e.g. translation,cutout")
    # moving average of G's weights used for samples (0 turns it off): smoother images
    ema_decay: float = _field(0.999, RECIPE, flag="e.g. 0.999 to sample from an averaged generator")
    # > 0: measure `metrics` every this many epochs, keeping checkpoints/best.pt by `best_metric`, on the features of
    # the shipped MNIST classifier for grey digits, else of Inception (pytorch-fid)
    eval_every: int = _field(0, RUN_CONTROL, flag="measure `metrics` every this many epochs and keep best.pt "
                             "(default 0: never)")
    # generated images per evaluation (compare scores only at equal counts)
    eval_samples: int = _field(1000, RUN_CONTROL)
    # comma list of scores.METRICS: fid, kid, precision_recall
    metrics: str = _field("fid", RUN_CONTROL, flag="what each evaluation measures: a comma list of fid, kid, "
                          "precision_recall")
    # the history column that picks best.pt: fid or kid (lowest wins), precision or recall (highest wins)
    best_metric: str = _field("fid", RUN_CONTROL, flag="the score that picks best.pt: fid or kid (lowest), "
                              "precision or recall (highest)")
    # auto: what devices.py picks (fp16 + GradScaler on a T4, bf16 where the hardware has it)
    precision: str = _field("auto", RECIPE, flag="auto: the device's fastest safe choice", choices=PRECISIONS)
    channels_last: bool = _field(True, RECIPE)  # NHWC memory layout: faster convolutions on CPU and tensor cores
    compile: bool = _field(False, RUN_CONTROL)  # torch.compile the models (pays on long GPU runs only)
    # with compile: "reduce-overhead" also captures CUDA graphs (launch-bound nets)
    compile_mode: str = _field("default", RUN_CONTROL)
    checkpoint_minutes: float = _field(0.0, RUN_CONTROL,  # > 0 also saves inside an epoch every this many minutes
                                       flag="also checkpoint inside an epoch this often")
    keep_checkpoints: int = _field(3, RUN_CONTROL)  # newest checkpoints kept after each successful save
    sample_count: int = _field(64, RECIPE)  # fixed-noise images drawn after every epoch
    tensorboard: bool = _field(False, RUN_CONTROL)  # also log scalars for TensorBoard (needs the tensorboard package)
    # under torchrun on GPUs: BatchNorm statistics over the whole batch rather than each process's share
    sync_batch_norm: bool = _field(False, RECIPE, flag="under torchrun on GPUs, BatchNorm over all processes' "
                                   "images (SyncBatchNorm); off: per process")

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> Config:
        """The preset's values with `overrides` on top (an override of None keeps the preset's value); a colour data
        set on a grayscale preset needs `channels`."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
        overrides = {field: value for field, value in overrides.items() if value is not None}
        values = {"preset": name, **PRESETS[name], **overrides}
        dataset = values.get("dataset", cls.dataset)
        # An explicit channels=1 is the opt-in to grey images; only the preset's silent 1 is refused.
        silent_grey = "channels" not in overrides and values.get("channels", cls.channels) == 1
        if silent_grey and dataset in DATASETS and DATASETS[dataset].channels == 3:
            raise ConfigError(_grey_preset_message(dataset, name))
        return cls(**values)

    def run_name(self) -> str:
        """A run folder name from the preset and data set, such as "demo-mnist-5k", plus a short digest of the
        network and recipe fields that differ from the preset's: changing one of those starts a new run rather than
        resuming another run's checkpoint, while run-control fields (epochs, ...) keep the name."""
        folder = self.dataset.startswith("folder:")
        dataset = f"folder-{Path(self.dataset.removeprefix('folder:')).name}" if folder else self.dataset
        name = f"{self.preset}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-")
        reference = {field.name: PRESETS[self.preset].get(field.name, field.default)
                     for field in dataclasses.fields(self) if field.metadata["class"] != RUN_CONTROL}
        changed = {field: getattr(self, field) for field, value in reference.items()
                   if field not in ("preset", "dataset") and getattr(self, field) != value}
        if changed:
            name += "-" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:6]
        return name

    def conditional(self) -> Config:
        """This config as a conditional GAN over its data set's classes: num_classes set from the data, and D at
        least CONDITIONAL_D_FEATURES wide, as its features now tell both real from fake and class from class."""
        count = len(class_names(self.dataset))
        if count < 2:
            raise ConfigError(f"num_classes: {no_classes_message(self.dataset)}")
        return dataclasses.replace(self, num_classes=count, d_features=max(self.d_features, CONDITIONAL_D_FEATURES))

    @property
    def offline_fid(self) -> bool:
        """Scores on the shipped MNIST classifier's features (grey digits); otherwise on Inception's (pytorch-fid)."""
        known = DATASETS.get(self.dataset)
        return known is not None and known.scored_offline and self.channels == 1

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics of `metrics`, in order."""
        return tuple(name.strip() for name in self.metrics.split(",") if name.strip())

    @property
    def score_columns(self) -> tuple[str, ...]:
        """The history columns that `metrics` fill, in order."""
        return tuple(column for name in self.metric_names if name in METRIC_TABLE
                     for column in METRIC_TABLE[name].columns)

    @property
    def augment_policy(self) -> tuple[str, ...]:
        """The augmentations of `augment`, in order."""
        return tuple(name.strip() for name in self.augment.split(",") if name.strip())

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field and the allowed values."""
        self._check_choices()
        self._check_counts()
        self._check_numbers()
        self._check_classes()
        self._check_combinations()

    def _check_choices(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: unknown {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.image_size not in IMAGE_SIZES:
            raise ConfigError(f"image_size: {self.image_size} is not supported; use one of {IMAGE_SIZES}")
        if self.channels not in CHANNELS:
            raise ConfigError(f"channels: {self.channels} is not supported; use 1 (grayscale) or 3 (RGB)")
        for name, allowed in (("loss", LOSSES), ("precision", PRECISIONS), ("compile_mode", COMPILE_MODES),
                              ("seeding", SEEDINGS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: unknown {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        unknown_metrics = [name for name in self.metric_names if name not in METRIC_TABLE]
        if unknown_metrics or not self.metric_names:
            raise ConfigError(f"metrics: {(unknown_metrics or [self.metrics])[0]!r} is not a metric; give a comma list "
                              f"of {', '.join(METRIC_TABLE)}")
        if self.best_metric not in self.score_columns:
            raise ConfigError(f"best_metric: {self.best_metric!r} is not measured; choose one of "
                              f"{', '.join(self.score_columns)} (or add its metric to metrics)")
        unknown = [name for name in self.augment_policy if name not in AUGMENTATIONS]
        if unknown:
            raise ConfigError(f"augment: {unknown[0]!r} is not an augmentation; give a comma list of "
                              f"{', '.join(AUGMENTATIONS)} (or nothing)")
        if self.dataset not in DATASETS and not self.dataset.startswith(FOLDER_PREFIX):
            raise ConfigError(f"dataset: unknown {self.dataset!r}; choose one of {', '.join(DATASETS)} "
                              "or folder:<path to a folder of images>")

    def _check_counts(self) -> None:
        for name in ("z_dim", "g_features", "d_features", "batch_size", "epochs", "sample_count",
                     "keep_checkpoints", "eval_every", "eval_samples"):
            value = getattr(self, name)
            minimum = 0 if name in ("epochs", "eval_every") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"{name}: {value!r} must be a positive whole number")

    def _check_numbers(self) -> None:
        for name in ("lr", "lr_d", "beta1", "beta2", "ema_decay", "label_smoothing", "gp_weight", "checkpoint_minutes"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool)) and value is not None:
                # YAML 1.1 reads 2e-4 (no dot) as text: the commonest slip in a hand-written config.yaml.
                raise ConfigError(f"{name}: {value!r} must be a number; in YAML write 2.0e-4 or 0.0002, not 2e-4")
        for name in ("lr", "lr_d"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name}: {value!r} must be a positive number such as 2e-4")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name}: {getattr(self, name)!r} must be in [0, 1)")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing: {self.label_smoothing!r} must be in [0, 0.5), e.g. 0.1")
        if self.checkpoint_minutes < 0:
            raise ConfigError(f"checkpoint_minutes: {self.checkpoint_minutes!r} must be 0 (off) or positive")

    def _check_classes(self) -> None:
        count = self.num_classes
        if not isinstance(count, int) or isinstance(count, bool) or count < 0 or count == 1:
            raise ConfigError(f"num_classes: {count!r} must be 0 (unconditional) or a class count of at least 2")
        known = DATASETS.get(self.dataset)
        if not count or known is None or len(known.classes) == count:
            return
        if not known.classes:
            raise ConfigError(f"num_classes: {no_classes_message(self.dataset)}")
        raise ConfigError(f"num_classes: {self.dataset} has {len(known.classes)} classes, not {count}; set "
                          f"num_classes to {len(known.classes)}, or to 0 to train unconditionally")

    def _check_combinations(self) -> None:
        if self.batch_norm and not LOSS_TABLE[self.loss].allows_batch_norm_in_d:
            raise ConfigError(f"batch_norm: must be False with loss {self.loss!r} (BatchNorm mixes the samples "
                              "that the gradient penalty treats one by one)")
        if self.label_smoothing and not LOSS_TABLE[self.loss].takes_label_smoothing:
            raise ConfigError(f"label_smoothing: smooths BCE targets, and loss {self.loss!r} has none; set it to 0, "
                              "or use loss 'non-saturating'")

    def architecture(self) -> dict:
        """The fields that fix the networks' shapes."""
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}

    def to_dict(self) -> dict:
        """Plain data (safe inside a weights_only checkpoint)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Config:
        """Build from plain data (older field names read as today's); an unknown key is an error naming it."""
        data = {RENAMED.get(name, name): value for name, value in data.items()}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        return cls(**data)

    def write_yaml(self, file: BinaryIO) -> None:
        """Write the config as YAML to `file`, fields in their order."""
        file.write(yaml.safe_dump(self.to_dict(), sort_keys=False).encode())

    def save_yaml(self, path) -> Path:
        """Write the config as YAML (whole, through storage.write_atomic)."""
        path = Path(path)
        storage.write_atomic(path, self.write_yaml)
        return path

    @classmethod
    def load_yaml(cls, path) -> Config:
        """Read a config written by save_yaml (or by hand); an unreadable file is a ConfigError naming it."""
        try:
            data = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; check the path, or leave out --config "
                              "to start from a preset") from None
        except OSError as error:
            raise ConfigError(f"config file {path} cannot be read ({error.strerror or error}); check the path "
                              "and its permissions") from error
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ConfigError(f"config file {path} is not valid YAML ({problem}{where}); fix that line, or "
                              "write a fresh file with Config.save_yaml") from error
        if not isinstance(data, dict):
            held = "nothing" if data is None else f"a {type(data).__name__}"
            raise ConfigError(f"config file {path} holds {held}, expected a mapping of config fields; write one "
                              "`field: value` per line, e.g. `lr: 0.0002`")
        return cls.from_dict(data)


def fields_of(field_class: str) -> tuple[str, ...]:
    """The names of the Config fields in `field_class` (ARCHITECTURE, RUN_CONTROL or RECIPE), in field order."""
    if field_class not in FIELD_CLASSES:
        raise ValueError(f"unknown field class {field_class!r}; use one of {', '.join(FIELD_CLASSES)}")
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("class") == field_class)


def flag_fields() -> tuple[dataclasses.Field, ...]:
    """The Config fields that are also `train` options, each with its help text (and choices) in its metadata."""
    return tuple(f for f in dataclasses.fields(Config) if "flag" in f.metadata)


# Fields that define the networks' shapes: a checkpoint can only be loaded into these.
ARCHITECTURE_FIELDS = fields_of(ARCHITECTURE)
# Fields a re-run may change without breaking an exact resume: how long to train and how to store it.
RUN_CONTROL_FIELDS = fields_of(RUN_CONTROL)


class ArchitectureMismatchError(ValueError):
    """The requested networks differ from the checkpoint's; the message names the fields."""


def resume_config(requested: Config | None, saved: dict) -> Config:
    """The config a run resumes with: the checkpoint's (`saved`), with the requested run-control fields.

    The networks must match (else an ArchitectureMismatchError); a requested recipe field that differs is warned
    about and the checkpoint's value kept, so that training continues exactly.
    """
    saved_config = Config.from_dict(saved)
    if requested is None:
        return saved_config
    differing = [f"{name} (checkpoint {getattr(saved_config, name)!r}, requested {getattr(requested, name)!r})"
                 for name in ARCHITECTURE_FIELDS if getattr(saved_config, name) != getattr(requested, name)]
    if differing:
        raise ArchitectureMismatchError(
            "the checkpoint's networks differ from the requested ones: " + "; ".join(differing)
            + ". Use a new run dir, or start over with --fresh / resume=False.")
    kept = [name for name in fields_of(RECIPE) if getattr(saved_config, name) != getattr(requested, name)]
    if kept:
        # stacklevel: the caller of the Trainer (Trainer -> checkpoint.starting_point -> here)
        warnings.warn(f"resuming keeps the checkpoint's {', '.join(kept)} so training continues exactly",
                      stacklevel=4)
    return dataclasses.replace(saved_config, **{name: getattr(requested, name) for name in RUN_CONTROL_FIELDS})
