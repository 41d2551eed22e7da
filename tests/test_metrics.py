"""Metrics: Fréchet distance against closed forms and SciPy, the shipped classifier, offline FID, Inception FID."""

from __future__ import annotations

import math
import sys
from urllib.error import URLError

import numpy as np
import pytest
import scipy.linalg
import torch
from hostile import Hostile

from dcganlib import metrics
from dcganlib.checkpoint import CheckpointError
from dcganlib.metrics import (
    SHIPPED_CLASSIFIER,
    FIDResult,
    classifier_features,
    frechet_distance,
    frechet_distance_from_features,
    inception_features,
    inception_fid,
    inception_preprocess,
    load_classifier,
    load_inception,
    mnist_5k_split,
    mode_coverage,
    offline_fid,
    real_reference,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.standard_normal((dim, 2 * dim))
    return a @ a.T / (2 * dim) + 0.01 * np.eye(dim)


def _scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy.linalg.sqrtm of the (non-symmetric) product."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    assert np.abs(covmean.imag).max() < 1e-8
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


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


# ---------------------------------------------------------------- standard FID (pytorch-fid's network, no download)


def test_inception_preprocessing_gives_the_fid_network_three_channels_in_0_1():
    images = torch.full((2, 1, 28, 28), -1.0)
    images[1] = 1.0
    x = inception_preprocess(images)
    assert x.shape == (2, 3, 28, 28), "the FID network resizes to 299 itself"
    assert torch.equal(x[0], torch.zeros(3, 28, 28)) and torch.equal(x[1], torch.ones(3, 28, 28))
    colour = torch.rand(1, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(inception_preprocess(colour), (colour + 1) / 2)


@pytest.fixture
def untrained_fid_network(monkeypatch):
    """load_inception() with pytorch-fid's real architecture but random weights: the download is faked away."""
    import pytorch_fid.inception

    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", lambda *args, **kwargs: {})
    monkeypatch.setattr(pytorch_fid.inception.torchvision.models.Inception3, "load_state_dict",
                        lambda self, state_dict, *args, **kwargs: None)
    torch.manual_seed(0)
    return load_inception()


def test_load_inception_is_pytorch_fids_pool3_network(untrained_fid_network):
    from pytorch_fid.inception import FIDInceptionA

    assert any(isinstance(module, FIDInceptionA) for module in untrained_fid_network.modules()), \
        "not the FID Inception (torchvision's own Inception has no FIDInceptionA blocks)"
    features = inception_features(torch.rand(2, 1, 28, 28) * 2 - 1, untrained_fid_network)
    assert features.shape == (2, 2048)


def test_inception_fid_plumbing():
    # A stand-in extractor (per-channel means): the 2048-d covariance square roots cost ~40 s on this CPU.
    stand_in = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    fake, real = torch.rand(5, 1, 28, 28) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    result = inception_fid(fake, real, model=stand_in, batch_size=2)
    assert math.isfinite(result.fid) and result.fid > 0 and (result.n_fake, result.n_real) == (5, 4)
    assert result.extractor == "given feature extractor"
    assert inception_fid(real, real, model=stand_in).fid == pytest.approx(0, abs=1e-9)


def test_inception_without_download_says_what_to_do(monkeypatch):
    import pytorch_fid.inception

    def refuse(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", refuse)
    with pytest.raises(RuntimeError, match="FID Inception weights download.*offline_fid"):
        inception_fid(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 28, 28))


def test_inception_without_pytorch_fid_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", None)
    with pytest.raises(RuntimeError, match=r'pip install "dcganlib\[fid\]"'):
        load_inception()


# ---------------------------------------------------------------- what mutation testing found untested


class PixelClassifier(torch.nn.Module):
    """A stand-in classifier: an image's top-left pixel p in [-1, 1] names its class round((p + 1) * 4.5)."""

    description = "pixel stand-in"

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # the metrics read the device from a parameter

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        classes = ((x[:, 0, 0, 0] + 1) * 4.5).round().long()
        return torch.nn.functional.one_hot(classes, 10).float() * 20


def digits_of_class(classes: list[int]) -> torch.Tensor:
    images = torch.zeros(len(classes), 1, 28, 28)
    images[:, 0, 0, 0] = torch.tensor(classes, dtype=torch.float) / 4.5 - 1
    return images


def test_mode_coverage_uses_the_classifier_it_is_given():
    classes = [0] * 99 + [5]  # class 5 is exactly min_fraction = 1% of the set: it counts as covered
    coverage = mode_coverage(digits_of_class(classes), classifier=PixelClassifier(), min_fraction=0.01)
    assert coverage["counts"] == [99, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert coverage["classes_covered"] == 2
    assert coverage["extractor"] == "pixel stand-in"
    assert coverage["mean_confidence"] == pytest.approx(1.0, abs=1e-6)
    entropy = -(0.99 * math.log(0.99) + 0.01 * math.log(0.01))
    assert coverage["entropy"] == pytest.approx(entropy)
    assert coverage["kl_from_uniform"] == pytest.approx(math.log(10) - entropy)
    assert set(coverage) == {"counts", "entropy", "max_entropy", "kl_from_uniform", "tv_from_uniform",
                             "classes_covered", "mean_confidence", "n_fake", "extractor"}
    probabilities = metrics.classifier_probabilities(digits_of_class([2, 7]), PixelClassifier())
    assert probabilities.argmax(1).tolist() == [2, 7]


def test_a_single_class_has_an_entropy_of_plus_zero():
    entropy = mode_coverage(digits_of_class([4] * 10), classifier=PixelClassifier())["entropy"]
    assert entropy == 0 and math.copysign(1, entropy) == 1  # -0.0 would print as "-0.000"


def test_split_defaults_to_heldout_and_names_a_bad_one():
    assert torch.equal(mnist_5k_split()[1], mnist_5k_split("heldout")[1])
    with pytest.raises(ValueError, match="split must be 'train' or 'heldout', got 'test'"):
        mnist_5k_split("test")


def test_classifier_loader_messages_say_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.pt not found: run `python benchmarks/train_classifier\.py` "
                       "to create it"):
        load_classifier(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    advice = r"\. Re-create it with `python benchmarks/train_classifier\.py`\.$"
    with pytest.raises(CheckpointError, match=r"unusable: .*" + advice):
        load_classifier(foreign)
    fresh = metrics.MnistClassifier()
    assert fresh.metadata == {} and fresh.description == "MNIST classifier (unnamed weights)"


class ColumnClassifier(PixelClassifier):
    """PixelClassifier whose features are the means of four middle columns: digits vary there."""

    description = "column stand-in"

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0].mean(dim=1)[:, 12:16]


def test_offline_fid_with_a_given_classifier_uses_it_on_both_sides(heldout):
    columns = ColumnClassifier()
    images = heldout[0]
    fake, real = images[:300], images[500:800]
    result = offline_fid(fake, real, classifier=columns)
    assert result.fid == pytest.approx(frechet_distance_from_features(columns.embed(fake), columns.embed(real)))
    assert result.extractor == "column stand-in" and (result.n_fake, result.n_real) == (300, 300)
    # The default real side, the held-out digits, seen through the same classifier.
    reference = real_reference("heldout", columns)
    assert (reference.split, reference.n, reference.extractor) == ("mnist-5k heldout", 1000, "column stand-in")
    np.testing.assert_allclose(reference.mu, columns.embed(images).double().mean(0).numpy(), atol=1e-6)
    assert offline_fid(fake, classifier=columns).fid == pytest.approx(
        frechet_distance_from_features(columns.embed(fake), columns.embed(images)))
    custom = metrics.reference_from_images(real, columns)
    assert (custom.split, custom.extractor, custom.n) == ("custom", "column stand-in", 300)


def test_offline_fid_takes_the_reference_it_is_given(heldout):
    fake = heldout[0][:200]
    train_reference = real_reference("train")
    assert train_reference.split == "mnist-5k train" and train_reference.n == 4000
    against_train = offline_fid(fake, reference=train_reference).fid
    assert against_train != pytest.approx(offline_fid(fake).fid)  # not silently the held-out default
    with pytest.raises(ValueError, match="^pass real_images or reference, not both$"):
        offline_fid(fake, fake, reference=train_reference)


def test_means_of_different_lengths_are_named_in_the_error():
    with pytest.raises(ValueError, match=r"means must be vectors of one length, got \(2,\) and \(3,\)"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(2))


def test_float32_inputs_are_computed_in_float64():
    rng = np.random.default_rng(0)
    sigma1, sigma2 = _random_spd(rng, 6).astype(np.float32), _random_spd(rng, 6).astype(np.float32)
    mu1, mu2 = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    exact = frechet_distance(mu1.astype(np.float64), sigma1.astype(np.float64), mu2.astype(np.float64),
                             sigma2.astype(np.float64))
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(exact, rel=1e-13)
    features = torch.randn(50, 3, requires_grad=True)  # a tensor still in a graph is read without its graph
    mu, sigma = metrics.feature_statistics(features)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_array_equal(mu, features.detach().double().mean(0).numpy())


def test_two_feature_rows_are_enough_for_statistics():
    mu, sigma = metrics.feature_statistics(np.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_allclose(mu, [1.0, 2.0])
    np.testing.assert_allclose(sigma, [[2.0, 2.0], [2.0, 2.0]])


def test_a_tiny_matrix_that_is_not_psd_is_still_refused():
    # The tolerance scales with the matrix: -1e-9 against eigenvalues of 1e-8 is a real negative, not round-off.
    tiny = np.diag([1e-8, -1e-9])
    with pytest.raises(ValueError, match="sigma1 is not positive semi-definite"):
        frechet_distance(np.zeros(2), tiny, np.zeros(2), np.eye(2))


def test_classifier_features_use_the_classifier_given():
    images = digits_of_class([1, 2, 3])
    torch.testing.assert_close(classifier_features(images, ColumnClassifier()), ColumnClassifier().embed(images))


def test_classifier_input_greys_rgb_by_luminance_and_resizes_with_antialiasing():
    columns = ColumnClassifier()
    rgb = torch.rand(2, 3, 28, 28) * 2 - 1
    grey = 0.299 * rgb[:, :1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:]
    torch.testing.assert_close(classifier_features(rgb, columns), columns.embed(grey))
    big = torch.rand(2, 1, 64, 64) * 2 - 1
    small = torch.nn.functional.interpolate(big, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(classifier_features(big, columns), columns.embed(small))
    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\) images, got shape \(28, 28\)"):
        classifier_features(torch.zeros(28, 28), columns)
    with pytest.raises(ValueError, match="^expected 1 or 3 channels, got 2$"):
        classifier_features(torch.zeros(1, 2, 28, 28), columns)


def test_each_bad_matrix_is_named_in_its_error():
    with pytest.raises(ValueError, match=r"sigma1 must be \(2, 2\) to match the means, got \(3, 3\)"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match=r"sigma2 must be \(2, 2\) to match the means, got \(3, 3\)"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match=r"sigma1 is not positive semi-definite \(smallest eigenvalue -1\)"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match=r"^sqrt\(sigma1\) sigma2 sqrt\(sigma1\) is not positive semi-definite"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -1.0]))


def test_a_classifier_file_without_metadata_loads_on_the_device_asked_for(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save({"state_dict": metrics.MnistClassifier().state_dict()}, path)
    classifier = load_classifier(path)
    assert classifier.metadata == {} and not classifier.training
    assert next(load_classifier(path, device="meta").parameters()).device == torch.device("meta")


def test_loading_the_classifier_leaves_the_callers_random_stream_alone():
    # A training loop that scores mid-run (the canonical loop draws its noise from the global RNG) must get the
    # same noise whether or not the classifier was loaded before.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    metrics.load_classifier()
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)
