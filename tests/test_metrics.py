"""Metrics: Fréchet distance against closed forms and SciPy, the shipped classifier, offline FID, Inception FID."""

from __future__ import annotations

import math
from urllib.error import URLError

import numpy as np
import pytest
import scipy.linalg
import torch
from hostile import Hostile
from torchvision import models

from dcganlib import metrics
from dcganlib.checkpoint import CheckpointError
from dcganlib.metrics import (
    SHIPPED_CLASSIFIER,
    FIDResult,
    classifier_features,
    frechet_distance,
    frechet_distance_from_features,
    inception_extractor,
    inception_features,
    inception_fid,
    inception_preprocess,
    load_classifier,
    mnist_5k_split,
    mode_coverage,
    offline_fid,
    real_reference,
)


def _random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, 2 * dim))
    return a @ a.T / (2 * dim) + 0.01 * np.eye(dim)


def _scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy.linalg.sqrtm of the (non-symmetric) product."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    assert np.abs(covmean.imag).max() < 1e-8
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The test CPU is shared: extra threads on these small batches cost several times more than they save.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- Fréchet distance


def test_identical_gaussians_are_at_zero():
    sigma = _random_spd(np.random.default_rng(0), 16)
    mu = np.arange(16.0)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-9)


def test_shifted_means_give_squared_distance():
    sigma = _random_spd(np.random.default_rng(1), 8)
    mu1, mu2 = np.zeros(8), np.linspace(-1, 2, 8)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(mu2 @ mu2), rel=1e-9)


def test_diagonal_covariances_closed_form():
    a, b = np.array([1.0, 4.0, 0.0, 2.5]), np.array([9.0, 1.0, 3.0, 0.0])  # zeros: singular on both sides
    mu1, mu2 = np.array([0.0, 1, 2, 3]), np.array([1.0, 1, 0, 3])
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_one_dimensional_scalars():
    assert frechet_distance(0.0, 4.0, 3.0, 1.0) == pytest.approx(9 + (2 - 1) ** 2)


@pytest.mark.parametrize("dim", [2, 10, 64])
def test_agrees_with_scipy_sqrtm(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    sigma1, sigma2 = _random_spd(rng, dim), _random_spd(rng, dim)
    expected = _scipy_frechet(mu1, sigma1, mu2, sigma2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)


def test_from_features_matches_statistics():
    rng = np.random.default_rng(3)
    f1, f2 = rng.standard_normal((300, 12)), rng.standard_normal((200, 12)) * 1.5 + 0.5
    expected = _scipy_frechet(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert frechet_distance_from_features(f1, f2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance_from_features(torch.from_numpy(f1).float(), f1) == pytest.approx(0, abs=1e-5)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="must be"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


# ---------------------------------------------------------------- shipped classifier and offline FID


@pytest.fixture(scope="module")
def heldout() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = mnist_5k_split("heldout")
    return images.float().div(127.5).sub(1), labels


def test_split_is_stratified_and_disjoint():
    train_images, train_labels = mnist_5k_split("train")
    images, labels = mnist_5k_split("heldout")
    assert images.shape == (1000, 1, 28, 28) and train_images.shape == (4000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [100] * 10
    assert torch.bincount(train_labels).tolist() == [400] * 10


def test_shipped_classifier_reaches_97_percent(heldout):
    assert SHIPPED_CLASSIFIER.stat().st_size < 1_000_000
    classifier = load_classifier()
    images, labels = heldout
    accuracy = (classifier(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.97
    assert classifier.metadata["heldout_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert "held-out acc" in classifier.description


def test_classifier_loader_refuses_hostile_and_foreign_files(tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt"
    torch.save({"state_dict": Hostile(marker)}, hostile)
    with pytest.raises(CheckpointError, match=r"Classifier file .*hostile\.pt is unusable.*train_classifier"):
        load_classifier(hostile)
    assert not marker.exists()
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt is unusable: it lacks the keys state_dict"):
        load_classifier(foreign)


def test_features_accept_other_sizes_and_rgb(heldout):
    images = heldout[0][:8]
    features = classifier_features(images)
    assert features.shape == (8, 128)
    rgb64 = torch.nn.functional.interpolate(images, size=64, mode="bilinear").expand(-1, 3, -1, -1)
    assert classifier_features(rgb64).shape == (8, 128)
    uint8 = ((images + 1) * 127.5).round().to(torch.uint8)
    assert torch.allclose(classifier_features(uint8), features, atol=1e-4)


def test_offline_fid_of_a_set_with_itself_is_zero(heldout):
    result = offline_fid(heldout[0])  # default real side: the same held-out 1,000
    assert isinstance(result, FIDResult)
    assert result.fid == pytest.approx(0, abs=1e-6)
    assert (result.n_fake, result.n_real) == (1000, 1000)
    assert "held-out acc" in result.extractor and "1000 fake vs 1000 real" in str(result)


def test_offline_fid_grows_with_noise_and_shifts(heldout):
    images = heldout[0]
    reference = real_reference()
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=generator)
    fids = [float(offline_fid((images + level * noise).clamp(-1, 1), reference=reference))
            for level in (0.1, 0.3, 0.6, 1.0)]
    assert fids[0] > 0 and all(a < b for a, b in zip(fids, fids[1:], strict=False))
    shifted = offline_fid(torch.roll(images, shifts=3, dims=-1), images)
    assert shifted.fid > 0 and shifted.n_real == 1000


def test_mode_coverage_of_real_digits_is_near_uniform(heldout):
    coverage = mode_coverage(heldout[0])
    assert coverage["entropy"] > 2.2 and coverage["classes_covered"] == 10
    assert coverage["max_entropy"] == pytest.approx(math.log(10))
    assert sum(coverage["counts"]) == coverage["n_fake"] == 1000
    assert coverage["tv_from_uniform"] < 0.05


def test_mode_coverage_of_one_repeated_digit(heldout):
    images, labels = heldout
    copies = images[labels == 3][:1].expand(1000, -1, -1, -1)
    coverage = mode_coverage(copies)
    assert coverage["classes_covered"] == 1 and coverage["counts"][3] == 1000
    assert coverage["entropy"] == pytest.approx(0, abs=1e-9)
    assert coverage["kl_from_uniform"] == pytest.approx(math.log(10))
    assert coverage["tv_from_uniform"] == pytest.approx(0.9)


# ---------------------------------------------------------------- Inception FID (random weights: no download)


def test_inception_preprocessing():
    images = torch.full((2, 1, 28, 28), -1.0)
    images[1] = 1.0
    x = inception_preprocess(images)
    assert x.shape == (2, 3, 299, 299)
    mean, std = torch.tensor(metrics.IMAGENET_MEAN), torch.tensor(metrics.IMAGENET_STD)
    assert torch.allclose(x[0, :, 0, 0], -mean / std) and torch.allclose(x[1, :, 5, 7], (1 - mean) / std)
    assert inception_preprocess(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 299, 299)


def test_inception_features_with_random_weights():
    torch.manual_seed(0)
    model = inception_extractor(models.inception_v3(weights=None, aux_logits=False, init_weights=False))
    assert inception_features(torch.rand(2, 1, 28, 28) * 2 - 1, model).shape == (2, 2048)


def test_inception_fid_plumbing():
    # A stand-in extractor (per-channel means): the 2048-d covariance square roots cost ~40 s on this CPU.
    stand_in = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    fake, real = torch.rand(5, 1, 28, 28) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    result = inception_fid(fake, real, model=stand_in, batch_size=2)
    assert math.isfinite(result.fid) and result.fid > 0 and (result.n_fake, result.n_real) == (5, 4)
    assert inception_fid(real, real, model=stand_in).fid == pytest.approx(0, abs=1e-9)


def test_inception_without_download_says_what_to_do(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights either
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", refuse)
    with pytest.raises(RuntimeError, match="weights download.*offline_fid"):
        inception_fid(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 28, 28))
