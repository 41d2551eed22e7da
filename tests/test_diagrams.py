"""The notebooks' teaching pictures: what they draw is computed, so it is checked."""

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from dcganlib import Config, build_models, make_noise
from dcganlib.diagrams import (
    overlap_counts,
    plot_activation_functions,
    plot_runs,
    plot_stage_statistics,
    plot_transposed_convolution,
)
from dcganlib.latent import arithmetic_latents
from dcganlib.models import stage_outputs


@pytest.mark.parametrize(("kernel", "stride", "inner"),
                         [(4, 2, {4}), (3, 2, {1, 2, 4}), (6, 2, {9}), (4, 3, {1, 2, 4})])
def test_overlap_counts_are_even_exactly_when_the_kernel_is_a_multiple_of_the_stride(kernel, stride, inner):
    counts = overlap_counts(kernel, stride, size=8)
    assert counts.shape == (7 * stride + kernel, 7 * stride + kernel)
    assert counts.sum() == 8 * 8 * kernel * kernel  # every stamp lands whole
    border = kernel  # the outer rim gets fewer stamps whatever the pattern
    assert set(counts[border:-border, border:-border].unique().int().tolist()) == inner


def test_stage_outputs_follow_the_network_stage_by_stage():
    generator, _ = build_models(Config.from_preset("mnist28"))
    z = make_noise(4, generator.z_dim, seed=0)
    outputs = stage_outputs(generator.net, z)
    assert [tuple(out.shape[1:]) for out in outputs] == [(256, 3, 3), (128, 6, 6), (64, 13, 13), (1, 28, 28),
                                                         (1, 28, 28)]
    assert torch.equal(outputs[-1], generator.net(z).detach())


def test_without_batch_norm_the_untrained_signal_shrinks_stage_by_stage():
    """What notebook 1's bars show: BatchNorm keeps the spread; N(0, 0.02) weights alone shrink it."""
    torch.manual_seed(0)
    with_norm, _ = build_models(Config.from_preset("mnist28"))
    without, _ = build_models(Config.from_preset("mnist28", batch_norm=False))
    z = make_noise(64, 64, seed=0)
    kept = [out.std().item() for out in stage_outputs(with_norm.net, z)[:3]]
    shrunk = [out.std().item() for out in stage_outputs(without.net, z)[:3]]
    assert all(0.4 < s < 0.8 for s in kept) and shrunk[0] > shrunk[1] > shrunk[2] and shrunk[2] < kept[2] / 20


def test_the_pictures_are_figures_with_what_they_name():
    figure = plot_transposed_convolution(3, 2)
    assert isinstance(figure, Figure) and "3x3 kernel" in figure.axes[0].get_title()
    figure = plot_activation_functions({"ReLU": F.relu, "LeakyReLU": lambda x: F.leaky_relu(x, 0.2)})
    gradient_lines = figure.axes[1].get_lines()
    leaky = [line for line in gradient_lines if line.get_label() == "LeakyReLU"][0]
    assert min(leaky.get_ydata()) == pytest.approx(0.2)  # the slope kept for negative inputs
    generator, _ = build_models(Config.from_preset("mnist28"))
    assert len(plot_stage_statistics({"G": generator.net}, make_noise(8, 64)).axes) == 1
    runs = plot_runs({"a": {"fid": [3.0, 2.0], "classes": [1, 2]}}, ["classes", "fid"], log_scale=["fid"])
    assert [ax.get_title() for ax in runs.axes] == ["classes", "fid"] and runs.axes[1].get_yscale() == "log"


def test_arithmetic_latents_average_each_group_first():
    groups = [make_noise(3, 8, seed=seed) for seed in (1, 2, 3)]
    a, b, c, result = arithmetic_latents(*groups)
    means = [group.mean(0) for group in groups]
    assert torch.equal(a, means[0]) and torch.equal(b, means[1]) and torch.equal(c, means[2])
    torch.testing.assert_close(result, means[0] - means[1] + means[2])
