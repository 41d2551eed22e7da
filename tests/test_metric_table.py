"""KID, improved precision/recall and the memorisation check: against torch-fidelity on the same features, by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from dcganlib import metrics, scores
from dcganlib.scores import kernel_inception_distance, memorisation, precision_recall

KID_MEAN, KID_STD = "kernel_inception_distance_mean", "kernel_inception_distance_std"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gaussian() -> tuple[np.ndarray, np.ndarray]:
    """600 x 64 standard normal reals and fakes scaled by 1.1 and shifted by 0.1: precision ~0.25, recall ~0.9."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((600, 64)), 1.1 * rng.standard_normal((600, 64)) + 0.1


@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier features (float32) of 1,000 train digits and the 1,000 held-out ones, 100 per digit each."""
    # mnist-5k is sorted by label: every 4th train image keeps all ten digits, as a head slice would not.
    train = metrics.classifier_features(metrics.mnist_5k_split("train")[0][::4])
    return train, metrics.classifier_features(metrics.mnist_5k_split("heldout")[0])


def _pairs(name: str, request) -> tuple:
    """(real, fake) features of a named case: Gaussians, or held-out vs train mnist digits."""
    if name == "gaussian":
        return request.getfixturevalue("gaussian")
    train, heldout = request.getfixturevalue("mnist")
    return heldout[::2], train[::5]  # 500 reals, 200 fakes, both of all ten digits (20 fakes per digit)


# ---------------------------------------------------------------- KID


@pytest.mark.parametrize("case", ["gaussian", "mnist"])
def test_kid_matches_torch_fidelity_on_the_same_subsets(case, request):
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = _pairs(case, request)
    ours = kernel_inception_distance(real, fake, subsets=20, subset_size=150, seed=7)
    # torch-fidelity takes the fakes first (its input1) and computes in the dtype it is given: float64 here.
    theirs = kid_features_to_metric(torch.as_tensor(fake).double(), torch.as_tensor(real).double(),
                                    kid_subsets=20, kid_subset_size=150, rng_seed=7, verbose=False)
    assert ours == pytest.approx((theirs[KID_MEAN], theirs[KID_STD]), rel=1e-9)


def test_kid_on_whole_sets_is_deterministic_and_random_subsets_average_to_it(gaussian):
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = gaussian
    whole, spread = kernel_inception_distance(real, fake, subsets=1, subset_size=600, seed=0)
    theirs = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=1,
                                    kid_subset_size=600, rng_seed=123, verbose=False)
    assert spread == 0 and whole == pytest.approx(theirs[KID_MEAN], rel=1e-9)
    # subset_size beyond the sample count is clipped to it, and on whole sets the seed cannot matter.
    assert kernel_inception_distance(real, fake, subsets=1, subset_size=10_000, seed=5) == pytest.approx((whole, 0))
    # Every pair is equally likely in a random subset, so the subset average is an unbiased estimate of `whole`.
    mean, std = kernel_inception_distance(real, fake, subsets=200, subset_size=200, seed=1)
    assert abs(mean - whole) < 4 * std / np.sqrt(200)


def test_kid_leaves_the_global_rngs_alone(gaussian):
    real, fake = gaussian
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    before = torch.get_rng_state(), np.random.get_state(), random.getstate()
    first = kernel_inception_distance(real, fake, subsets=5, subset_size=100, seed=3)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), before[1], strict=True))
    assert random.getstate() == before[2]
    torch.manual_seed(99), np.random.seed(99), random.seed(99)  # other global seeds, same subsets
    assert kernel_inception_distance(real, fake, subsets=5, subset_size=100, seed=3) == first
    assert kernel_inception_distance(real, fake, subsets=5, subset_size=100, seed=4) != first


def test_kid_is_about_zero_for_one_distribution_and_grows_with_a_mean_shift(gaussian):
    real, _ = gaussian
    other = np.random.default_rng(1).standard_normal(real.shape)

    def kid(fake):
        return kernel_inception_distance(real, fake, subsets=20, subset_size=200)[0]

    assert abs(kid(other)) < 0.02  # measured 0.002; keeping the k(x, x) terms in the within-set sums gives ~0.08
    # Against itself the subsets share ~1/3 of their points, whose k(x, x) ~ 8 enter the cross term: about -0.02.
    assert abs(kid(real)) < 0.05
    shifted = [kid(real + shift) for shift in (0.25, 0.5, 1.0)]
    assert 0.1 < shifted[0] < shifted[1] < shifted[2]


# ---------------------------------------------------------------- precision and recall


@pytest.mark.parametrize("case", ["gaussian", "mnist"])
@pytest.mark.parametrize("k", [3, 5])
def test_precision_recall_match_torch_fidelity(case, k, request, monkeypatch):
    from torch_fidelity.metric_prc import prc_features_to_metric

    real, fake = _pairs(case, request)
    monkeypatch.setattr(scores, "_DISTANCE_ROWS", 128)  # several row batches on both sides
    ours = precision_recall(real, fake, k=k)
    assert 0.1 < min(ours) and max(ours) < 0.99  # neither side trivially all in or all out
    for save_cpu_ram in (False, True):  # torch-fidelity's whole-matrix and batched paths
        theirs = prc_features_to_metric(torch.as_tensor(fake).double(), torch.as_tensor(real).double(),
                                        prc_neighborhood=k, prc_batch_size=128, save_cpu_ram=save_cpu_ram,
                                        verbose=False)
        # Its fractions are float32 means: 1e-6 is far below one sample's 1/600, so the counts are equal.
        assert ours == pytest.approx((theirs["precision"], theirs["recall"]), abs=1e-6)


def test_precision_recall_by_hand_on_a_line():
    # k = 1 radii of the reals 0, 1, 3: 1, 1, 2 (the nearest *other* real). Fakes: -1 is on 0's ball edge (inside),
    # 2.5 is in 3's ball, 5.5 is 2.5 from 3 (outside): precision 2/3. The fakes' radii 3.5, 3, 3 hold every real.
    real, fake = np.array([[0.0], [1.0], [3.0]]), np.array([[-1.0], [2.5], [5.5]])
    assert precision_recall(real, fake, k=1) == pytest.approx((2 / 3, 1.0))


def test_fakes_covering_one_of_two_clusters_have_full_precision_and_half_recall():
    rng = np.random.default_rng(2)
    cluster_a, cluster_b = rng.standard_normal((200, 8)) + 10, rng.standard_normal((200, 8)) - 10
    fake = cluster_a + 1e-3 * rng.standard_normal(cluster_a.shape)
    assert precision_recall(np.concatenate([cluster_a, cluster_b]), fake) == pytest.approx((1.0, 0.5))


def test_bad_inputs_say_what_is_wrong(gaussian):
    real, fake = gaussian
    with pytest.raises(ValueError, match="feature size: 64 vs 32"):
        precision_recall(real, fake[:, :32])
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(real, fake[:3], k=3)
    with pytest.raises(ValueError, match="subset_size >= 2"):
        kernel_inception_distance(real, fake, subset_size=1)
    with pytest.raises(ValueError, match=r"fake_features must be \(N >= 2, D\)"):
        memorisation(real, real, fake[0])


def test_tensors_and_arrays_give_the_same_numbers(mnist):
    train, heldout = mnist
    real, fake = heldout[:200], train[:200]
    assert precision_recall(real, fake) == precision_recall(real.numpy(), fake.double().numpy())
    kid = kernel_inception_distance(real, fake, subsets=3, subset_size=100)
    assert kid == kernel_inception_distance(real.numpy(), fake.numpy(), subsets=3, subset_size=100)


# ---------------------------------------------------------------- memorisation


def test_copied_training_images_sit_at_distance_zero(mnist):
    train, heldout = mnist
    copied = torch.arange(0, 1000, 7)
    result = memorisation(train, heldout, train[copied])
    assert np.array_equal(result.fake_nearest_index, copied.numpy())
    assert np.all(result.fake_distance == 0) and result.fake_median == 0
    assert result.suspicious_fraction == 1.0
    assert result.heldout_median > 1  # unseen reals are far from every training image


def test_fakes_like_heldout_reals_look_like_heldout_reals(mnist):
    train, heldout = mnist
    result = memorisation(train, heldout[0::2], heldout[1::2])
    assert result.fake_median == pytest.approx(result.heldout_median, rel=0.1)
    assert result.threshold == pytest.approx(np.percentile(result.heldout_distance, 1))
    assert result.suspicious_fraction < 0.05  # ~0.01 expected: the threshold is the held-out 1st percentile
    nearest = torch.cdist(heldout[1::2].double(), train.double()).min(dim=1).values.numpy()
    assert result.fake_distance == pytest.approx(nearest, rel=1e-6)
