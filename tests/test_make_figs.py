"""`make figs` (tools/make_figs.py) on a tiny setting: one epoch of the course net, every figure written."""

import json

import pytest

from tools import make_figs

FIGURES = ("directions.png", "samples.png", "losses.png", "d_outputs.png", "fid.png", "progress.gif", "lerp.png",
           "slerp.png", "arithmetic.png", "run.json")


@pytest.mark.slow
def test_make_figs_trains_and_writes_every_figure(tmp_path):
    figs = tmp_path / "figs"
    make_figs.main(["--run-dir", str(tmp_path / "run"), "--preset", "mnist28", "--epochs", "1", "--figs-dir",
                    str(figs)])
    assert sorted(path.name for path in figs.iterdir()) == sorted(FIGURES)
    facts = json.loads((figs / "run.json").read_text())
    assert facts["epochs"] == 1 and facts["preset"] == "mnist28" and len(facts["fid_by_epoch"]) == 1
