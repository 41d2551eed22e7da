"""Scores of generated images from features: the Fréchet distance, KID, precision and recall, and a memorisation
check, each a function of feature matrices (N, D) with no randomness of the caller's; and METRICS, the table of those
that training can measure. The features come from `metrics` (the offline MNIST classifier, or Inception)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# ---------------------------------------------------------------- Fréchet distance


def _sqrt_psd(matrix: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalue square roots and the square root of a symmetric PSD matrix (tiny negatives clamped)."""
    values, vectors = np.linalg.eigh(matrix)
    # Round-off leaves eigenvalues of about -1e-16 * scale; anything far below zero is a real error.
    if values.size and values.min() < -1e-6 * max(abs(values).max(), 1e-30):
        raise ValueError(f"{name} is not positive semi-definite (smallest eigenvalue {values.min():.3g})")
    roots = np.sqrt(np.clip(values, 0, None))
    return roots, (vectors * roots) @ vectors.T


def _as_covariance(sigma, dim: int, name: str) -> np.ndarray:
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if sigma.shape != (dim, dim):
        raise ValueError(f"{name} must be ({dim}, {dim}) to match the means, got {sigma.shape}")
    return (sigma + sigma.T) / 2


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be vectors of one length, got {mu1.shape} and {mu2.shape}")
    sigma1 = _as_covariance(sigma1, mu1.size, "sigma1")
    sigma2 = _as_covariance(sigma2, mu1.size, "sigma2")
    _, root1 = _sqrt_psd(sigma1, "sigma1")
    # tr sqrt(s1 s2) == tr sqrt(sqrt(s1) s2 sqrt(s1)); the latter is symmetric PSD, so eigh applies and no
    # complex parts or singular-matrix failures (as with sqrtm of the non-symmetric s1 s2) can appear.
    inner = root1 @ sigma2 @ root1
    roots, _ = _sqrt_psd((inner + inner.T) / 2, "sqrt(sigma1) sigma2 sqrt(sigma1)")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * roots.sum()
    return max(float(value), 0.0)  # mathematically >= 0; round-off can leave -1e-13


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, unbiased) of (N, D) features."""
    f = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance_from_features(features1, features2) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


# ---------------------------------------------------------------- KID, precision/recall, memorisation on features

_DISTANCE_ROWS = 1000  # rows per distance batch: 1,000 x 10,000 float64 is 80 MB, never the full 10,000^2 matrix


def _feature_matrix(features, name: str) -> np.ndarray:
    """(N, D) features (Tensor or array) as a float64 numpy array."""
    f = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must be (N >= 2, D) features, got shape {f.shape}")
    return f


def _matching(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _feature_matrix(a, names[0]), _feature_matrix(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} differ in feature size: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _cubic_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size samples under the cubic kernel, as torch-fidelity's mmd2."""
    m = x.shape[0]
    k_xx, k_yy = _cubic_kernel(x, x), _cubic_kernel(y, y)
    # Dropping the diagonals (k(x, x) terms) is what makes the within-set averages unbiased.
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * _cubic_kernel(x, y).sum() / (m * m))


def kernel_inception_distance(
    real_features, fake_features, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and std of the unbiased cubic-kernel MMD^2 over random subsets.

    In squared feature units, unbiased (can be slightly negative); std is over subsets, not an error bar of the mean.
    """
    real, fake = _matching(real_features, fake_features, ("real_features", "fake_features"))
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, real.shape[0], fake.shape[0])
    # A private RandomState: the caller's RNGs stay untouched, and its frozen stream draws torch-fidelity's subsets
    # (fake first, as its input1) for the same seed.
    rng = np.random.RandomState(seed)
    mmds = [_mmd2_unbiased(fake[rng.choice(fake.shape[0], m, replace=False)],
                           real[rng.choice(real.shape[0], m, replace=False)]) for _ in range(subsets)]
    return float(np.mean(mmds)), float(np.std(mmds))


def _kth_neighbour_distance(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row (the row itself, at 0, is not counted)."""
    return torch.cat([torch.cdist(rows, x).kthvalue(k + 1, dim=1).values for rows in x.split(_DISTANCE_ROWS)])


def _fraction_inside(points: Tensor, centres: Tensor, radii: Tensor) -> float:
    """Fraction of points within (<=) the radius of at least one centre."""
    inside = [(torch.cdist(rows, centres) <= radii).any(dim=1) for rows in points.split(_DISTANCE_ROWS)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real_features, fake_features, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) from k-NN balls around each sample, in [0, 1].

    Precision: the fraction of fakes inside some real ball; recall: the fraction of reals inside some fake ball.
    """
    real, fake = (torch.from_numpy(f) for f in _matching(real_features, fake_features,
                                                         ("real_features", "fake_features")))
    if not 1 <= k < min(real.shape[0], fake.shape[0]):
        raise ValueError(f"k must be at least 1 and below both sample counts, got {k}")
    precision = _fraction_inside(fake, real, _kth_neighbour_distance(real, k))
    recall = _fraction_inside(real, fake, _kth_neighbour_distance(fake, k))
    return precision, recall


@dataclass(frozen=True)
class Memorisation:
    """Euclidean feature distances to the nearest training image, of fakes and of held-out reals."""

    fake_nearest_index: np.ndarray  # (n_fake,) row of each fake's nearest training image
    fake_distance: np.ndarray  # (n_fake,)
    heldout_distance: np.ndarray  # (n_heldout,) what unseen real images score: the yardstick for fakes
    fake_median: float
    heldout_median: float
    threshold: float  # 1st percentile of heldout_distance
    suspicious_fraction: float  # fakes nearer than threshold; about 0.01 for a generator that copies nothing


def _nearest(queries: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to each query's nearest reference row."""
    q, r = torch.from_numpy(queries), torch.from_numpy(reference)
    index = torch.cat([torch.cdist(rows, r).argmin(dim=1) for rows in q.split(_DISTANCE_ROWS)])
    # Recomputed from the difference: cdist's matmul shortcut leaves up to ~1e-6 where a copy is at exactly 0.
    return index.numpy(), (q - r[index]).norm(dim=1).numpy()


def memorisation(train_features, heldout_features, fake_features) -> Memorisation:
    """Nearest-training-image distances of fakes against those of held-out reals; copies sit far below."""
    train, heldout = _matching(train_features, heldout_features, ("train_features", "heldout_features"))
    _, fake = _matching(train, fake_features, ("train_features", "fake_features"))
    index, fake_distance = _nearest(fake, train)
    _, heldout_distance = _nearest(heldout, train)
    threshold = float(np.percentile(heldout_distance, 1))
    return Memorisation(index, fake_distance, heldout_distance, float(np.median(fake_distance)),
                        float(np.median(heldout_distance)), threshold, float((fake_distance < threshold).mean()))


# ---------------------------------------------------------------- what training can measure


@dataclass(frozen=True)
class Metric:
    """A row of METRICS: the history columns it fills, whether higher is better in each, and how it is computed
    from real and fake features."""

    columns: tuple[str, ...]
    higher_is_better: tuple[bool, ...]
    compute: Callable[[Tensor, Tensor], tuple[float, ...]]


# Every metric by its Config name (Config.metrics); its columns are what Config.best_metric may name.
METRICS: dict[str, Metric] = {
    "fid": Metric(("fid",), (False,), lambda real, fake: (frechet_distance_from_features(real, fake),)),
    "kid": Metric(("kid",), (False,), lambda real, fake: (kernel_inception_distance(real, fake)[0],)),
    "precision_recall": Metric(("precision", "recall"), (True, True), lambda real, fake: precision_recall(real, fake)),
}
COLUMNS: dict[str, bool] = {column: higher for metric in METRICS.values()
                            for column, higher in zip(metric.columns, metric.higher_is_better, strict=True)}
