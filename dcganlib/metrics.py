"""Sample quality from images: the features that the scores compare (a small MNIST classifier shipped with the
package, or Inception through pytorch-fid), an offline MNIST-classifier FID, mode coverage and the Inception FID. The
scores of feature matrices (Fréchet distance, KID, precision/recall, memorisation) live in `scores` and are
re-exported here.

Offline FID uses a small MNIST classifier shipped in `assets/mnist_classifier.pt` (trained by
`benchmarks/train_classifier.py`); its numbers are comparable with each other, not with published
Inception FIDs. FID is biased by the sample count, so compare values only at equal `n_fake` and `n_real`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint, runs
from .data import load_mnist_5k
from .scores import Memorisation as Memorisation  # the feature scores, re-exported beside the features' networks
from .scores import feature_statistics, frechet_distance
from .scores import frechet_distance_from_features as frechet_distance_from_features
from .scores import kernel_inception_distance as kernel_inception_distance
from .scores import memorisation as memorisation
from .scores import precision_recall as precision_recall

SHIPPED_CLASSIFIER = runs.ASSETS / "mnist_classifier.pt"
# mnist-5k is sorted by label (500 per digit), so a head/tail split would hold out only 8s and 9s.
# Every fifth image (index % 5 == 4) is held out instead: 1,000 images, exactly 100 per digit.
HELDOUT_EVERY = 5
SPLIT_DESCRIPTION = "mnist-5k, index % 5 == 4 held out: 4,000 train / 1,000 held-out, 100 per digit"


@dataclass(frozen=True)
class FIDResult:
    """A FID value with the sample counts and the feature extractor it was computed with."""

    fid: float
    n_fake: int
    n_real: int
    extractor: str

    def __float__(self) -> float:
        return self.fid

    def __str__(self) -> str:
        return f"FID {self.fid:.3f} ({self.n_fake} fake vs {self.n_real} real, {self.extractor})"


@dataclass(frozen=True)
class RealReference:
    """Feature statistics of a set of real images, computed once and reused for every FID against it."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    split: str
    extractor: str


# ---------------------------------------------------------------- offline MNIST classifier


class MnistClassifier(nn.Module):
    """A small MNIST CNN; `embed` gives the 128-d penultimate features used for offline FID."""

    def __init__(self, feature_dim: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            # input: 1 x 28 x 28 in [-1, 1]
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            # state size: 16 x 14 x 14
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            # state size: 32 x 7 x 7; one more pool keeps the linear layer (and the shipped file) small
            nn.MaxPool2d(2), nn.Flatten(),
            # state size: 288
            nn.Linear(32 * 3 * 3, feature_dim), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, 10))
        self.metadata: dict = {}

    def embed(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    @property
    def description(self) -> str:
        return self.metadata.get("description", "MNIST classifier (unnamed weights)")


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> MnistClassifier:
    """The classifier in eval mode from a file written by benchmarks/train_classifier.py (default: shipped)."""
    path = Path(path) if path is not None else SHIPPED_CLASSIFIER
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python benchmarks/train_classifier.py` to create it")
    state = checkpoint.load_file(path, required=("state_dict",), what="Classifier file",
                                 advice="Re-create it with `python benchmarks/train_classifier.py`.")
    with torch.random.fork_rng(devices=[]):  # the initial weights, replaced below, draw nothing from the caller's RNG
        classifier = MnistClassifier()
    classifier.load_state_dict(state["state_dict"])
    classifier.metadata = dict(state.get("metadata", {}))
    return classifier.to(device).eval()


@functools.lru_cache(maxsize=1)
def _shipped_classifier() -> MnistClassifier:
    return load_classifier()


def _or_shipped(classifier: MnistClassifier | None) -> MnistClassifier:
    return _shipped_classifier() if classifier is None else classifier


def _classifier_input(images: Tensor) -> Tensor:
    """(N, C, H, W) float in [-1, 1] or uint8 -> (N, 1, 28, 28) float in [-1, 1]."""
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
    x = images.float().div(127.5).sub(1) if images.dtype == torch.uint8 else images.float()
    if x.shape[1] == 3:
        x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] != 1:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    if x.shape[-2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    return x


@torch.no_grad()
def _run(images: Tensor, classifier: MnistClassifier, fn, batch_size: int) -> Tensor:
    classifier.eval()
    device = next(classifier.parameters()).device
    out = [fn(_classifier_input(images[i : i + batch_size].to(device))).float().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out)


def classifier_features(images: Tensor, classifier: MnistClassifier | None = None, batch_size: int = 500) -> Tensor:
    """(N, 128) penultimate classifier features of images in [-1, 1] (any size, 1 or 3 channels)."""
    classifier = _or_shipped(classifier)
    return _run(images, classifier, classifier.embed, batch_size)


def classifier_probabilities(
    images: Tensor, classifier: MnistClassifier | None = None, batch_size: int = 500
) -> Tensor:
    """(N, 10) class probabilities of images in [-1, 1]."""
    classifier = _or_shipped(classifier)
    return _run(images, classifier, lambda x: classifier(x).softmax(1), batch_size)


# ---------------------------------------------------------------- real references and offline FID


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[Tensor, Tensor]:
    return load_mnist_5k()  # ~5 s of CSV parsing: read once per process


def mnist_5k_split(split: str = "heldout") -> tuple[Tensor, Tensor]:
    """uint8 images (N, 1, 28, 28) and labels of the classifier's "train" (4,000) or "heldout" (1,000) split."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    images, labels = _mnist_5k()
    heldout = torch.arange(images.shape[0]) % HELDOUT_EVERY == HELDOUT_EVERY - 1
    keep = heldout if split == "heldout" else ~heldout
    return images[keep], labels[keep]


def reference_from_images(
    images: Tensor, classifier: MnistClassifier | None = None, split: str = "custom"
) -> RealReference:
    """Classifier-feature statistics of real images, for reuse across many offline_fid calls."""
    classifier = _or_shipped(classifier)
    mu, sigma = feature_statistics(classifier_features(images, classifier))
    return RealReference(mu, sigma, images.shape[0], split, classifier.description)


@functools.lru_cache(maxsize=2)
def split_features(split: str = "heldout") -> Tensor:
    """The shipped classifier's features of an mnist-5k split, computed once per process: the real side of every
    offline score (treat the tensor as read-only)."""
    return classifier_features(mnist_5k_split(split)[0])


@functools.lru_cache(maxsize=2)
def _shipped_reference(split: str) -> RealReference:
    features = split_features(split)
    mu, sigma = feature_statistics(features)
    return RealReference(mu, sigma, features.shape[0], f"mnist-5k {split}", _shipped_classifier().description)


def real_reference(split: str = "heldout", classifier: MnistClassifier | None = None) -> RealReference:
    """Statistics of the mnist-5k held-out (default) or train split; cached for the shipped classifier."""
    if classifier is None:
        return _shipped_reference(split)
    return reference_from_images(mnist_5k_split(split)[0], classifier, split=f"mnist-5k {split}")


def offline_fid(
    fake_images: Tensor,
    real_images: Tensor | None = None,
    *,
    classifier: MnistClassifier | None = None,
    reference: RealReference | None = None,
) -> FIDResult:
    """FID in MNIST-classifier feature space; real side: `real_images`, `reference`, or the held-out 1,000."""
    if real_images is not None and reference is not None:
        raise ValueError("pass real_images or reference, not both")
    if real_images is None and reference is None:
        reference = real_reference("heldout", classifier)
    classifier = _or_shipped(classifier)
    if real_images is not None:
        reference = reference_from_images(real_images, classifier)
    mu, sigma = feature_statistics(classifier_features(fake_images, classifier))
    fid = frechet_distance(mu, sigma, reference.mu, reference.sigma)
    return FIDResult(fid, fake_images.shape[0], reference.n, classifier.description)


def mode_coverage(
    fake_images: Tensor, classifier: MnistClassifier | None = None, min_fraction: float = 0.01
) -> dict:
    """Digit histogram of generated images by the classifier, with its distance from uniform."""
    classifier = _or_shipped(classifier)
    probs = classifier_probabilities(fake_images, classifier)
    counts = torch.bincount(probs.argmax(1), minlength=10)
    p = counts.double() / counts.sum()
    nonzero = p[p > 0]
    entropy = float(-(nonzero * nonzero.log()).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    return {
        "counts": counts.tolist(),
        "entropy": entropy,  # nats; ln 10 ~ 2.303 when every digit is equally common
        "max_entropy": math.log(10),
        "kl_from_uniform": math.log(10) - entropy,  # KL(p || uniform)
        "tv_from_uniform": float((p - 0.1).abs().sum() / 2),
        "classes_covered": int((p >= min_fraction).sum()),
        "mean_confidence": float(probs.max(1).values.mean()),  # low values: digits the classifier cannot read
        "n_fake": fake_images.shape[0],
        "extractor": classifier.description,
    }


# ---------------------------------------------------------------- standard FID (pytorch-fid, needs a download)

FID_INSTALL = 'pip install "dcganlib[fid]" (or pip install pytorch-fid)'
FID_NETWORK = "Inception-v3 pool3, TensorFlow FID weights (pytorch-fid)"


def inception_preprocess(images: Tensor) -> Tensor:
    """Images in [-1, 1] (1 or 3 channels, any size) -> (N, 3, H, W) in [0, 1], what the FID network takes.

    The network itself resizes to 299 x 299 (bilinear) and rescales to [-1, 1], as the TensorFlow original did.
    """
    x = images.float().add(1).div(2).clamp(0, 1)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class _Pool3(nn.Module):
    """pytorch-fid's InceptionV3 returning its 2048-d pool3 features as (N, 2048)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)[0].flatten(1)


def load_inception(device: str | torch.device = "cpu") -> nn.Module:
    """The standard FID Inception network (the weights published FIDs use); downloads ~92 MB the first time."""
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError as e:
        raise RuntimeError(f"the standard FID needs the pytorch-fid package: {FID_INSTALL}") from e
    try:
        network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    except (OSError, RuntimeError) as e:  # URLError/HTTPError/SSL are OSErrors; a bad file is a RuntimeError
        raise RuntimeError(
            f"the standard FID needs the FID Inception weights download (~92 MB from github.com), which failed: {e}. "
            "Run it on Colab or with internet access; offline_fid() works offline."
        ) from e
    return _Pool3(network).to(device).eval()


@torch.no_grad()
def inception_features(images: Tensor, model: nn.Module, batch_size: int = 64) -> Tensor:
    """(N, features) from the FID network (or a stand-in taking the same [0, 1] input) for images in [-1, 1]."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(inception_preprocess(images[i : i + batch_size].to(device))).float().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out)


def inception_fid(
    fake_images: Tensor,
    real_images: Tensor,
    device: str | torch.device = "cpu",
    *,
    model: nn.Module | None = None,
    batch_size: int = 64,
) -> FIDResult:
    """The standard FID: Fréchet distance of the FID Inception network's pool3 features (`model`: a stand-in)."""
    extractor = FID_NETWORK if model is None else "given feature extractor"
    model = model if model is not None else load_inception(device)
    fake = inception_features(fake_images, model, batch_size)
    real = inception_features(real_images, model, batch_size)
    return FIDResult(frechet_distance_from_features(fake, real), fake.shape[0], real.shape[0], extractor)


