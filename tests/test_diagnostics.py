"""Reading runs for failure: the record of a run, the shipped runs of notebook 4's lab and the figure that shows them.

The shipped records are real runs; the tests check that each still shows the failure its name promises, as the
notebook's table describes it, so a re-recorded run that came out differently fails here first.
"""

import pytest
import torch
from kit import tiny_config

from dcganlib.diagnostics import EPOCH_COLUMNS, SHIPPED_RUNS, RecordedRun, plot_recorded_runs, record_run, shipped_run
from tools import record_failure_runs


def test_a_record_holds_every_epoch_and_round_trips_through_its_file(tmp_path):
    config = tiny_config(epochs=2, eval_samples=200)
    record = record_run(config, tmp_path / "run", "tiny", probe_samples=200, log=lambda message: None)
    assert all(len(record.epochs[name]) == 2 for name in EPOCH_COLUMNS)
    assert record.epochs["epoch"] == [1, 2] and all(fid > 0 for fid in record.epochs["fid"])
    assert [sum(counts) for counts in record.class_counts] == [200, 200]
    assert record.epochs["classes"] == [sum(count >= 2 for count in counts) for counts in record.class_counts]
    assert record.samples.dtype == torch.uint8 and record.samples.shape == (config.sample_count, 1, 28, 28)
    assert record.settings["batch_size"] == 500 and record.settings["eval_every"] == 1

    loaded = RecordedRun.load(record.save(tmp_path / "record.npz"))
    assert (loaded.title, loaded.settings, loaded.epochs, loaded.class_counts) == (
        record.title, record.settings, record.epochs, record.class_counts)
    assert torch.equal(loaded.samples, record.samples)
    assert loaded.images().min() >= -1 and loaded.images().max() <= 1


def final(record: RecordedRun, column: str) -> float:
    return record.epochs[column][-1]


def test_the_healthy_run_draws_every_digit_with_the_lowest_fid():
    runs = {name: shipped_run(name) for name in SHIPPED_RUNS}
    healthy = runs["healthy"]
    assert final(healthy, "classes") == 10
    assert final(healthy, "fid") < min(final(run, "fid") for name, run in runs.items() if name != "healthy")
    assert 0.3 < final(healthy, "d_fake") < final(healthy, "d_real") < 0.8  # neither player wins


def test_the_run_that_never_starts_draws_one_blob_all_along():
    never = shipped_run("never-starts")
    assert max(never.epochs["classes"]) <= 2
    assert final(never, "fid") > 3 * final(shipped_run("healthy"), "fid")


def test_in_the_run_d_wins_d_tells_real_from_fake_all_along():
    won = shipped_run("d-wins")
    assert min(won.epochs["d_real"][1:]) > 0.8 and max(won.epochs["d_fake"][1:]) < 0.2
    assert min(won.epochs["loss_g"][1:]) > 3 * final(shipped_run("healthy"), "loss_g")


def test_the_partially_collapsed_run_draws_only_some_digits_to_the_end():
    collapsed = shipped_run("partial-collapse")
    last_third = collapsed.epochs["classes"][-len(collapsed.epochs["classes"]) // 3:]
    assert 2 <= max(last_third) <= 7


def test_run_x_never_starts_for_twelve_epochs_then_collapses_partly():
    run_x = shipped_run("unlabelled")
    classes = run_x.epochs["classes"]
    assert classes[:12] == [1] * 12 and 5 <= min(classes[15:]) <= max(classes[15:]) <= 7
    assert all(run_x.class_counts[epoch][digit] == 0 for epoch in range(15, 28) for digit in (1, 4))
    assert 350 < final(run_x, "fid") < 450


def test_shipped_runs_are_known_by_name():
    with pytest.raises(ValueError, match="choose one of healthy"):
        shipped_run("collapse")


def test_the_lab_figure_has_one_row_of_five_panels_per_run():
    figure = plot_recorded_runs({name: shipped_run(name) for name in ("healthy", "d-wins")})
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles.count("losses") == 2 and titles.count("digits drawn, last epoch") == 2
    assert len(figure.axes) == 2 * 6  # five panels and the classes' second y axis, per row
    with pytest.raises(ValueError, match="at least one"):
        plot_recorded_runs([])


@pytest.mark.slow
def test_the_recording_tool_writes_a_record_the_lab_can_load(tmp_path):
    record_failure_runs.main(["--only", "d-wins", "--epochs", "1", "--out", str(tmp_path),
                              "--runs-dir", str(tmp_path / "runs")])
    record = RecordedRun.load(tmp_path / "run-d-wins.npz")
    assert record.title == "D wins" and record.settings["lr_d"] == 1e-3 and record.settings["precision"] == "fp32"
