"""dcganlib: the library behind the DCGAN notebook series: models, losses, data, resumable training, plots."""

from ._version import REPO_URL, __version__
from .checkpoint import latest_checkpoint, load_checkpoint
from .colab import flush_drive, in_colab, run_directory
from .config import PRESETS, Config, ConfigError
from .data import BatchLoader, load_dataset
from .devices import DeviceUnavailableError, device_report, pick_device
from .losses import discriminator_loss, generator_loss, gradient_penalty
from .models import Discriminator, Generator, build_models, count_parameters, init_weights, make_noise, print_shapes
from .pretrained import export_generator, load_generator, push_generator
from .step import conditional_train_step, plain_train_step
from .timing import training_time
from .train import Trainer, train

__all__ = [
    "PRESETS", "REPO_URL", "BatchLoader", "Config", "ConfigError", "DeviceUnavailableError", "Discriminator",
    "Generator", "Trainer", "__version__", "build_models", "conditional_train_step", "count_parameters",
    "device_report", "discriminator_loss",
    "export_generator", "flush_drive", "generator_loss", "gradient_penalty", "in_colab", "init_weights",
    "latest_checkpoint", "load_checkpoint", "load_dataset", "load_generator", "make_noise", "pick_device",
    "plain_train_step", "print_shapes", "push_generator", "run_directory", "train", "training_time",
]
