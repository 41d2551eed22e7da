"""The run's random streams: independent across seeds and streams, stable across versions, and old runs resume
with the seeding they started with."""

from __future__ import annotations

import pytest
import torch
from kit import assert_same_state, make_trainer, tiny_config

from dcganlib import checkpoint
from dcganlib.config import ConfigError
from dcganlib.runs import RunDir
from dcganlib.seeds import OFFSETS, STREAMS, stream_seed
from dcganlib.train import Trainer


def test_no_two_seed_and_stream_pairs_share_a_stream():
    seeds = {stream_seed(seed, stream) for seed in range(1000) for stream in STREAMS}
    assert len(seeds) == 1000 * len(STREAMS)
    assert all(0 <= seed < 2**63 for seed in seeds)  # what torch.Generator.manual_seed and numpy accept


def test_the_offset_seeding_is_the_one_from_before_config_seeding():
    # Seed 0's noise was seed 1's weights: what the hashed seeding ends, and what runs from before it resume with.
    assert stream_seed(0, "noise", "offset") == stream_seed(1, "weights", "offset") == 1
    assert [stream_seed(7, name, "offset") for name in STREAMS] == [7 + OFFSETS[name] for name in STREAMS]


def test_hashed_stream_seeds_stay_the_same_across_versions():
    # A run resumes its data order, evaluation noise and recalibration noise from these: they never change.
    assert stream_seed(0, "weights") == 6451415663468195773
    assert stream_seed(1, "noise") == 93567847859325998


def test_an_unknown_stream_or_seeding_is_refused():
    with pytest.raises(ValueError, match="unknown random stream 'nosie'; the streams are weights"):
        stream_seed(0, "nosie")
    with pytest.raises(ConfigError, match="seeding: unknown 'hash'; choose one of hashed, offset"):
        tiny_config(seeding="hash")


def test_a_run_from_before_hashed_seeding_resumes_exactly_with_its_offsets(tmp_path):
    """A checkpoint whose config has no `seeding` (dcganlib 0.2.0's, for one) goes on with the offset seeding: the
    data order, evaluation and recalibration noise it would have drawn, so the run ends as an uninterrupted one."""
    config = tiny_config(seeding="offset", epochs=2, eval_every=1, eval_samples=100, ema_decay=0.9)
    whole = make_trainer(tmp_path / "whole", config)
    whole.fit()
    cut = make_trainer(tmp_path / "cut", config)
    cut.fit(1)
    path = RunDir(tmp_path / "cut").checkpoint(1)
    old = checkpoint.load_checkpoint(path)
    del old["config"]["seeding"]
    torch.save(old, path)
    resumed = Trainer(None, tmp_path / "cut", progress=False, log=lambda message: None)
    assert resumed.config.seeding == "offset"
    resumed.fit()
    assert_same_state(whole.state_dict(), resumed.state_dict())


def test_a_new_run_is_hashed_and_its_checkpoint_says_so(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=1))
    trainer.fit()
    assert trainer.config.seeding == "hashed"
    assert checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))["config"]["seeding"] == "hashed"
