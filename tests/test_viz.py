from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import imageio.v3 as iio  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_generator import TinyGenerator  # noqa: E402

from dcganlib.viz import (  # noqa: E402
    image_grid,
    make_gif,
    plot_d_outputs,
    plot_losses,
    plot_memorisation,
    plot_metric,
    save_grid,
    show_images,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_history(epochs: int = 3, batches: int = 40, fid: bool = True) -> dict:
    steps = list(range(epochs * batches))
    history = {
        "batch": {
            "step": steps,
            "loss_d": [1.4 - 0.001 * s for s in steps],
            "loss_g": [0.7 + 0.002 * s for s in steps],
            "d_real": [0.5 + 0.001 * s for s in steps],
            "d_fake": [0.5 - 0.001 * s for s in steps],
        },
        "epoch": {
            "epoch": list(range(1, epochs + 1)),
            "loss_d": [1.3, 1.2, 1.1][:epochs],
            "loss_g": [0.8, 0.9, 1.0][:epochs],
            "d_real": [0.6, 0.65, 0.7][:epochs],
            "d_fake": [0.4, 0.35, 0.3][:epochs],
            "seconds": [1.0] * epochs,
        },
    }
    if fid:
        history["epoch"]["fid"] = [120.0, None, 80.0][:epochs]
    return history


EMPTY_HISTORY = {
    "batch": {"step": [], "loss_d": [], "loss_g": [], "d_real": [], "d_fake": []},
    "epoch": {"epoch": [], "loss_d": [], "loss_g": [], "d_real": [], "d_fake": [], "seconds": []},
}


def images(n: int = 10, channels: int = 1) -> torch.Tensor:
    return torch.linspace(-1.5, 1.5, n * channels * 16 * 16).view(n, channels, 16, 16)


def assert_png(path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 100


def write_frames(run, n: int = 3) -> None:
    samples = run / "samples"
    samples.mkdir(parents=True)
    for epoch in range(1, n + 1):
        # Distinct frames: GIF writers merge identical consecutive frames.
        save_grid(torch.full((4, 1, 16, 16), -1 + epoch / 2), samples / f"epoch_{epoch:04d}.png", nrow=2)


def test_image_grid_maps_to_unit_range_with_grid_shape():
    grid = image_grid(images(10), nrow=4)
    # 3 rows x 4 columns of 16 px images with 2 px padding; one channel becomes three.
    assert grid.shape == (3, 3 * 18 + 2, 4 * 18 + 2)
    assert grid.min() >= 0 and grid.max() <= 1
    assert image_grid(-torch.ones(1, 3, 4, 4), nrow=1)[:, 2:6, 2:6].eq(0).all()
    assert image_grid(torch.ones(1, 3, 4, 4), nrow=1)[:, 2:6, 2:6].eq(1).all()
    assert image_grid(torch.zeros(1, 3, 4, 4), nrow=1)[:, 2:6, 2:6].sub(0.5).abs().max() < 1e-6


def test_save_grid_writes_a_png_of_the_grid_size(tmp_path):
    path = save_grid(images(10), tmp_path / "a" / "b" / "grid.png", nrow=4)
    assert path == tmp_path / "a" / "b" / "grid.png"
    assert_png(path)
    with Image.open(path) as png:
        assert png.size == (4 * 18 + 2, 3 * 18 + 2)


@pytest.mark.parametrize("channels, cmap", [(1, "gray"), (3, None)])
def test_show_images_uses_gray_for_one_channel(channels, cmap):
    ax = show_images(images(4, channels), nrow=2, title="samples")
    shown = ax.images[0]
    assert ax.get_title() == "samples"
    assert shown.get_array().ndim == (2 if channels == 1 else 3)
    if cmap:
        assert shown.get_cmap().name == cmap
    plt.close(ax.figure)


@pytest.mark.parametrize("plot, panels", [(plot_losses, 2), (plot_d_outputs, 2), (plot_metric, 1)])
def test_plots_save_png_close_figure_and_return_it(tmp_path, plot, panels):
    open_before = plt.get_fignums()
    fig = plot(fake_history(), path=tmp_path / "plots" / "out.png")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == panels
    assert_png(tmp_path / "plots" / "out.png")
    assert plt.get_fignums() == open_before
    assert isinstance(plot(fake_history()), Figure)
    assert plt.get_fignums() == open_before


def test_plots_cope_with_a_first_epoch_in_progress(tmp_path):
    history = fake_history()
    history["epoch"] = {key: [] for key in history["epoch"]}
    for plot in (plot_losses, plot_d_outputs):
        fig = plot(history, tmp_path / "plot.png")
        assert_png(tmp_path / "plot.png")
        # The batch panel has curves; the epoch panel has nothing labelled (only the 0.5 guide line, if any).
        assert fig.axes[0].get_legend_handles_labels()[1]
        assert not fig.axes[1].get_legend_handles_labels()[1]


@pytest.mark.parametrize("plot", [plot_losses, plot_d_outputs, plot_metric])
@pytest.mark.parametrize("history", [EMPTY_HISTORY, {}])
def test_plots_refuse_an_empty_history(plot, history):
    with pytest.raises(ValueError, match="nothing to plot yet"):
        plot(history)


def test_plot_metric_draws_the_known_values_on_the_scale_asked_for():
    history = fake_history()
    history["epoch"]["fid"] = [None, 400.0, 40.0]
    linear, log = plot_metric(history), plot_metric(history, log_scale=True)
    assert linear.axes[0].get_yscale() == "linear" and log.axes[0].get_yscale() == "log"
    assert list(log.axes[0].lines[0].get_ydata()) == [400.0, 40.0]


def test_plot_metric_needs_the_key():
    with pytest.raises(ValueError, match="'fid'"):
        plot_metric(fake_history(fid=False))


def test_make_gif_has_one_frame_per_epoch(tmp_path):
    write_frames(tmp_path, 3)
    path = make_gif(tmp_path, fps=5)
    assert path == tmp_path / "progress.gif"
    frames = iio.imread(path, index=None)
    assert frames.shape[0] == 3
    assert frames.shape[1:3] == (2 * 18 + 2, 2 * 18 + 2)
    other = make_gif(tmp_path, path=tmp_path / "out" / "x.gif")
    assert iio.imread(other, index=None).shape[0] == 3


def test_make_gif_without_frames_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        make_gif(tmp_path)
    assert str(tmp_path / "samples") in str(error.value)
    assert "per epoch" in str(error.value)


def test_write_report_writes_all_files(tmp_path):
    generator = TinyGenerator().train()
    write_frames(tmp_path, 3)
    paths = write_report(tmp_path, fake_history(), generator, torch.randn(6, 8, 1, 1), nrow=3)
    assert set(paths) == {"grid", "losses", "d_outputs", "progress"}
    for key in ("grid", "losses", "d_outputs"):
        assert paths[key].parent == tmp_path
        assert_png(paths[key])
    with Image.open(paths["grid"]) as grid:
        assert grid.size == (3 * 18 + 2, 2 * 18 + 2)
    assert iio.imread(paths["progress"], index=None).shape[0] == 3
    assert generator.training


def test_write_report_without_frames_skips_the_gif(tmp_path):
    paths = write_report(tmp_path, fake_history(), TinyGenerator(), torch.randn(4, 8, 1, 1))
    assert "progress" not in paths
    assert not (tmp_path / "progress.gif").exists()


def test_the_memorisation_figure_shows_the_closest_fakes_above_their_training_images(tmp_path):
    from dcganlib.metrics import memorisation

    train = torch.randint(0, 256, (30, 1, 16, 16), dtype=torch.uint8)
    fakes = torch.cat([train[:3].float() / 127.5 - 1, torch.rand(7, 1, 16, 16) * 2 - 1])  # three copies
    flat = lambda images: (images.float() / (255 if images.dtype == torch.uint8 else 1)).flatten(1)  # noqa: E731
    result = memorisation(flat(train), flat(torch.rand(20, 1, 16, 16)), flat((fakes + 1) / 2))
    fig = plot_memorisation(result, fakes, train, closest=3, path=tmp_path / "memorisation.png")
    hist, pairs = fig.axes
    assert "3 closest fakes" in pairs.get_title() and (tmp_path / "memorisation.png").stat().st_size > 0
    assert sorted(result.fake_nearest_index[np.argsort(result.fake_distance)[:3]].tolist()) == [0, 1, 2]
    assert "30.0% of fakes" in hist.get_legend().get_texts()[-1].get_text()
