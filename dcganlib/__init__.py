"""dcganlib: the library behind the DCGAN notebook series: models, losses, data, resumable training, plots."""

__version__ = "0.1.0"

from .checkpoint import latest_checkpoint, load_checkpoint
from .colab import in_colab, run_directory
from .config import PRESETS, Config, ConfigError
from .data import BatchLoader, load_dataset
from .losses import discriminator_loss, generator_loss, gradient_penalty
from .models import Discriminator, Generator, build_models, count_parameters, init_weights, make_noise
from .pretrained import export_generator, load_generator
from .train import Trainer, pick_device, train

__all__ = [
    "PRESETS", "BatchLoader", "Config", "ConfigError", "Discriminator", "Generator", "Trainer", "build_models",
    "count_parameters", "discriminator_loss", "export_generator", "generator_loss", "gradient_penalty", "in_colab",
    "init_weights", "latest_checkpoint", "load_checkpoint", "load_dataset", "load_generator", "make_noise",
    "pick_device", "run_directory", "train",
]
