"""eval_every on any data set: the standard FID network against the run's own images (a stand-in network here)."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from kit import make_trainer
from PIL import Image

from dcganlib import metrics
from dcganlib.config import Config


class StandIn(torch.nn.Module):
    """Takes what the FID network takes (3 channels in [0, 1]) and returns 12 features: 2 x 2 channel means."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3 and 0 <= x.min() and x.max() <= 1, "not the FID network's input"
        return torch.nn.functional.adaptive_avg_pool2d(self.mix(x), 2).flatten(1)


@pytest.fixture
def folder(tmp_path):
    """64 small colour images, as a user's own folder."""
    rng = torch.Generator().manual_seed(0)
    for i in range(64):
        pixels = (torch.rand(16, 16, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / f"image_{i:02d}.png")
    return tmp_path


def _config(folder, **overrides) -> Config:
    return Config.from_preset("cifar32", **{"dataset": f"folder:{folder}", "image_size": 16, "g_features": 8,
                                            "d_features": 8, "batch_size": 16, "epochs": 1, "eval_every": 1,
                                            "eval_samples": 40, "sample_count": 4, "precision": "fp32",
                                            **overrides})


def test_eval_every_on_a_folder_uses_the_standard_network_against_its_images(folder, tmp_path, monkeypatch):
    asked = []

    def load_inception(device):
        asked.append(str(device))
        torch.manual_seed(1)
        return StandIn()

    monkeypatch.setattr(metrics, "load_inception", load_inception)
    trainer = make_trainer(tmp_path / "run", _config(folder))
    assert asked == ["cpu"], "the network is loaded when the trainer is built, so a failure shows at once"
    real = trainer.evaluation.real_features()
    first = trainer.loader.order(0)[:40].tolist()
    reals = torch.stack([trainer.loader.dataset[i] for i in first])
    assert torch.equal(real, metrics.inception_features(reals, trainer.evaluation._network))
    trainer.fit()
    fid = trainer.history["epoch"]["fid"][-1]
    assert math.isfinite(fid) and fid > 0
    assert fid == trainer.evaluation.best and (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert asked == ["cpu"], "the network and the real statistics are computed once"


def test_a_missing_pytorch_fid_stops_the_trainer_before_training(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", None)
    with pytest.raises(RuntimeError, match=r'pip install "dcganlib\[fid\]"'):
        make_trainer(tmp_path / "run", _config(folder))
    assert not (tmp_path / "run" / "checkpoints").exists()
