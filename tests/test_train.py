"""Training: the step, history, samples, and resume that is bit-identical to an uninterrupted run on the CPU."""

import copy
import itertools
import warnings

import pytest
import torch
from kit import (
    assert_same_networks,
    assert_same_state,
    make_trainer,
    notebook_function,
    plain_side,
    tiny_config,
    train_batches,
)

from dcganlib import checkpoint, distributed, timing
from dcganlib.config import ArchitectureMismatchError, Config
from dcganlib.ema import RECALIBRATION_IMAGES
from dcganlib.history import STAT_NAMES
from dcganlib.models import make_noise
from dcganlib.runs import RunDir
from dcganlib.seeds import stream_generator
from dcganlib.step import plain_train_step
from dcganlib.train import Trainer


def assert_same_training(first: Trainer, second: Trainer) -> None:
    """Two trainers hold the same state, bit for bit, wall times aside."""
    assert_same_state(first.state_dict(), second.state_dict())


def test_training_writes_history_samples_and_checkpoints(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=2))
    history = trainer.fit()
    batches = len(trainer.loader)
    assert batches == 10
    assert len(history["batch"]["loss_d"]) == 2 * batches
    assert history["batch"]["step"] == list(range(1, 2 * batches + 1))
    assert history["epoch"]["epoch"] == [1, 2]
    assert all(0 < v < 1 for v in history["batch"]["d_real"] + history["batch"]["d_fake"])
    assert (tmp_path / "samples" / "epoch_0002.png").is_file()
    assert (tmp_path / "config.yaml").is_file()
    saved = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))
    assert saved["epoch"] == 2 and saved["step"] == 2 * batches
    assert Config.from_dict(saved["config"]) == trainer.config


def test_fit_past_target_does_nothing(tmp_path):
    make_trainer(tmp_path, tiny_config(epochs=1)).fit()
    messages = []
    again = Trainer(tiny_config(epochs=1), tmp_path, progress=False, log=messages.append)
    again.fit()
    assert again.step == 10
    assert messages[0].startswith("Resumed from epoch 1")
    assert "Already trained 1 epochs" in messages[1]


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    straight = make_trainer(tmp_path / "straight", tiny_config(epochs=2))
    straight.fit()

    make_trainer(tmp_path / "split", tiny_config(epochs=1)).fit()
    messages = []
    resumed = make_trainer(tmp_path / "split", tiny_config(epochs=2), log=messages.append)
    assert messages == [f"Resumed from epoch 1 ({checkpoint.latest_checkpoint(tmp_path / 'split')}, step 10)."]
    resumed.fit()
    assert_same_training(straight, resumed)
    assert torch.equal(straight.sample(), resumed.sample())


def test_resume_from_a_mid_epoch_checkpoint_is_bit_identical(tmp_path):
    straight = make_trainer(tmp_path / "straight", tiny_config(epochs=2))
    straight.fit()

    # Stop 4 batches into the second epoch, as a disconnect would, after a mid-epoch save.
    interrupted = make_trainer(tmp_path / "split", tiny_config(epochs=2))
    interrupted.fit(epochs=1)
    train_batches(interrupted, epoch=1, count=4)
    path = interrupted.save_checkpoint()
    assert path.name == "ckpt_epoch_0001_batch_000004.pt"

    resumed = make_trainer(tmp_path / "split", tiny_config(epochs=2))
    assert (resumed.epoch, resumed.batch_in_epoch, resumed.step) == (1, 4, 14)
    resumed.fit()
    assert_same_training(straight, resumed)


def test_checkpoint_minutes_saves_inside_the_epoch(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=1, checkpoint_minutes=1e-9, keep_checkpoints=20))
    trainer.fit()
    names = sorted(p.name for p in RunDir(tmp_path).checkpoint_dir.glob("ckpt_*.pt"))
    assert names[0] == "ckpt_epoch_0000_batch_000001.pt"
    assert names[-1] == "ckpt_epoch_0001.pt"
    assert len(names) == 10  # batches 1..9 inside the epoch, then the end of epoch 1


def test_fresh_ignores_checkpoints(tmp_path):
    make_trainer(tmp_path, tiny_config(epochs=1)).fit()
    messages = []
    fresh = Trainer(tiny_config(epochs=1), tmp_path, resume=False, progress=False, log=messages.append)
    assert fresh.epoch == 0 and messages[0].startswith("Starting fresh")


def test_other_architecture_is_a_clear_error(tmp_path):
    make_trainer(tmp_path, tiny_config(epochs=1)).fit()
    with pytest.raises(ArchitectureMismatchError, match=r"g_features \(checkpoint 8, requested 16\).*--fresh"):
        make_trainer(tmp_path, tiny_config(g_features=16))


def test_resume_keeps_the_checkpoints_training_settings(tmp_path):
    make_trainer(tmp_path, tiny_config(epochs=1)).fit()
    with pytest.warns(UserWarning, match="keeps the checkpoint's lr"):
        resumed = make_trainer(tmp_path, tiny_config(epochs=2, lr=1e-3))
    assert resumed.config.lr == 2e-4 and resumed.config.epochs == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # run-control fields change without a warning
        resumed = make_trainer(tmp_path, tiny_config(epochs=3, eval_every=2, checkpoint_minutes=5))
    assert (resumed.config.eval_every, resumed.config.checkpoint_minutes) == (2, 5)


def test_resume_without_a_config_takes_the_checkpoints(tmp_path):
    make_trainer(tmp_path, tiny_config(epochs=1, seed=7)).fit()
    resumed = Trainer(None, tmp_path, progress=False, log=lambda message: None)
    assert resumed.config.seed == 7 and resumed.epoch == 1
    with pytest.raises(FileNotFoundError, match="choose a preset"):
        Trainer(None, tmp_path / "empty", progress=False)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    make_trainer(tmp_path, tiny_config(epochs=2)).fit()
    newest = checkpoint.latest_checkpoint(tmp_path)
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=newest.name):
        resumed = make_trainer(tmp_path, tiny_config(epochs=2))
    assert resumed.epoch == 1


@pytest.mark.parametrize("loss", ["minimax", "hinge", "wgan-gp"])
def test_every_loss_trains(tmp_path, loss):
    config = tiny_config(epochs=1, loss=loss, batch_norm=loss != "wgan-gp")
    history = make_trainer(tmp_path, config).fit()
    assert all(torch.isfinite(torch.tensor(history["batch"]["loss_g"])))


def test_ema_generator_is_kept_and_resumed(tmp_path):
    straight = make_trainer(tmp_path / "a", tiny_config(epochs=2, ema_decay=0.9))
    straight.fit()
    assert not torch.equal(straight.ema.model.net[0][0].weight, straight.generator.net[0][0].weight)
    make_trainer(tmp_path / "b", tiny_config(epochs=1, ema_decay=0.9)).fit()
    resumed = make_trainer(tmp_path / "b", tiny_config(epochs=2, ema_decay=0.9))
    resumed.fit()
    for a, b in zip(straight.ema.model.state_dict().values(), resumed.ema.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert torch.equal(straight.sample(), resumed.sample())


def test_the_ema_generator_samples_with_batch_norm_statistics_of_its_own_weights(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=2, ema_decay=0.9))
    trainer.fit()
    ema_norm, live_norm = trainer.ema.model.net[0][1], trainer.generator.net[0][1]
    assert not torch.equal(ema_norm.running_mean, live_norm.running_mean)
    # Measured through the EMA's own first layer on the run's recalibration noise, batch by batch.
    noise = make_noise(RECALIBRATION_IMAGES, trainer.config.z_dim,
                       generator=stream_generator(trainer.config.seed, "recalibration"))
    with torch.no_grad():
        means = [trainer.ema.model.net[0][0](z).mean((0, 2, 3)) for z in noise.split(trainer.config.batch_size)]
    torch.testing.assert_close(ema_norm.running_mean, torch.stack(means).mean(0))
    # The checkpoint holds them too, so an export or a resumed run's first grid draws the same images.
    saved = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))["ema_generator"]
    assert torch.equal(saved["net.0.1.running_mean"], ema_norm.running_mean)


def test_the_ema_generator_keeps_plain_batch_norm_under_sync_batch_norm(tmp_path, monkeypatch):
    # Rank 0 alone runs the EMA generator: a SyncBatchNorm there would wait for the other ranks forever.
    monkeypatch.setattr(distributed, "batch_norm",
                        lambda module, group, device, sync: torch.nn.SyncBatchNorm.convert_sync_batchnorm(module))
    trainer = make_trainer(tmp_path, tiny_config(epochs=0))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.generator.modules())
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.ema.model.modules())
    assert set(trainer.ema.model.state_dict()) == set(trainer.generator.state_dict())


def test_fid_every_epoch_keeps_the_best_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=2, eval_every=1, eval_samples=200))
    trainer.fit()
    fids = trainer.history["epoch"]["fid"]
    assert len(fids) == 2 and all(f > 0 for f in fids)
    best = checkpoint.load_checkpoint(RunDir(tmp_path).checkpoint_dir / "best.pt")
    assert best["best"] == {"metric": "fid", "value": min(fids)} and best["epoch"] == 1 + fids.index(min(fids))
    assert checkpoint.latest_checkpoint(tmp_path).name == "ckpt_epoch_0002.pt"


def test_fid_is_skipped_between_evaluations(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=2, eval_every=2, eval_samples=200))
    trainer.fit()
    assert trainer.history["epoch"]["fid"][0] is None and trainer.history["epoch"]["fid"][1] > 0


def fp16_config(epochs: int) -> Config:
    return tiny_config(epochs=epochs, precision="fp16")


def test_fp16_trains_on_the_cpu_with_a_grad_scaler(tmp_path):
    trainer = make_trainer(tmp_path, fp16_config(1))
    assert trainer.amp_dtype == torch.float16 and trainer.scaler.is_enabled()
    with torch.autocast("cpu", dtype=trainer.amp_dtype):
        assert trainer.generator(trainer.fixed_noise).dtype == torch.float16
    history = trainer.fit()
    assert torch.isfinite(torch.tensor(history["batch"]["loss_d"] + history["batch"]["loss_g"])).all()
    saved = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))["scaler"]
    assert saved == trainer.scaler.state_dict()
    # The scale starts at 2**16 and halves on every step whose fp16 gradients overflow (that step is skipped):
    # below the start, it shows the scaler caught real overflows instead of sitting idle.
    assert isinstance(saved["scale"], float) and 0 < saved["scale"] < 2.0**16


def test_fp16_resume_is_exact_including_the_grad_scaler(tmp_path):
    straight = make_trainer(tmp_path / "straight", fp16_config(1))
    straight.fit()

    interrupted = make_trainer(tmp_path / "split", fp16_config(1))
    train_batches(interrupted, epoch=0, count=6)
    interrupted.save_checkpoint()
    resumed = make_trainer(tmp_path / "split", fp16_config(1))
    assert resumed.scaler.state_dict() == interrupted.scaler.state_dict() != torch.amp.GradScaler("cpu").state_dict()
    resumed.fit()
    assert_same_training(straight, resumed)


def test_fp32_and_contiguous_path_trains(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = make_trainer(tmp_path, tiny_config(epochs=1, precision="fp32", channels_last=False))
    trainer.fit()
    assert trainer.history["epoch"]["epoch"] == [1]


def test_tensorboard_logs_epoch_scalars(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=1, tensorboard=True))
    trainer.fit()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_seconds_per_step_times_real_steps_and_leaves_the_rng_alone():
    before = torch.get_rng_state()
    seconds = timing.seconds_per_step(tiny_config(batch_size=8), steps=2)
    assert 0 < seconds < 60
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(("dataset", "epochs", "expected"), [
    ("mnist", 25, "25 epochs of mnist (11,700 steps) will take about 58 min here (0.300 s a step"),
    ("mnist-5k", 2, "2 epochs of mnist-5k (78 steps) will take about 23 s here (0.300 s a step"),
    ("folder:/photos", 5, "One training step takes about 0.300 s here (128 images)."),
])
def test_training_time_multiplies_the_step_by_the_run(monkeypatch, dataset, epochs, expected):
    monkeypatch.setattr(timing, "seconds_per_step", lambda config, device=None: 0.3)
    assert expected in timing.training_time(Config.from_preset("mnist28", dataset=dataset, epochs=epochs))


def test_state_dict_only_reads_yet_holds_every_batch(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=2))
    trainer.fit(epochs=1)
    train_batches(trainer, epoch=1, count=3)
    history = copy.deepcopy(trainer.history)
    assert len(history["batch"]["step"]) == 10  # the 3 new batches' stats still wait on the device
    first, second = trainer.state_dict(), trainer.state_dict()
    assert trainer.history == history  # reading the state moved nothing
    assert first["history"] == second["history"]
    assert first["history"]["batch"]["step"] == list(range(1, 14))
    saved = checkpoint.load_checkpoint(trainer.save_checkpoint())
    assert saved["history"]["batch"]["step"] == list(range(1, 14))
    assert all(len(saved["history"]["batch"][name]) == 13 for name in STAT_NAMES)
    trainer.fit()  # training goes on from the pending stats, each batch once
    assert trainer.history["batch"]["step"] == list(range(1, 21))


def test_mid_epoch_checkpoints_hold_every_batch_so_far(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=1, checkpoint_minutes=1e-9, keep_checkpoints=20))
    trainer.fit()
    for batch in range(1, 10):
        saved = checkpoint.load_checkpoint(RunDir(tmp_path).checkpoint(0, batch))
        assert saved["history"]["batch"]["step"] == list(range(1, batch + 1)), batch
        assert saved["history"]["batch"]["loss_d"] == trainer.history["batch"]["loss_d"][:batch]


def test_best_checkpoint_goes_through_the_checkpoint_save(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config(epochs=1))
    best = trainer.save_checkpoint(best=True)
    assert best == RunDir(tmp_path).best
    saved = checkpoint.load_checkpoint(best)
    assert saved["format_version"] == checkpoint.FORMAT_VERSION and "library_version" in saved
    assert RunDir(tmp_path).checkpoints() == []  # no epoch checkpoint


def test_the_best_score_is_the_lowest_fid_and_ties_go_to_the_newer_epoch(tmp_path):
    evaluation = make_trainer(tmp_path, tiny_config(epochs=1)).evaluation
    scores = [None, {"fid": 5.0}, {"fid": 6.0}, {"kid": 1.0}, {"fid": 5.0}, {"fid": 4.0}]
    assert [evaluation.is_new_best(score) for score in scores] == [False, True, False, False, True, True]
    assert evaluation.best == 4.0


def test_the_best_recall_is_the_highest(tmp_path):
    config = tiny_config(epochs=1, metrics="fid,precision_recall", best_metric="recall")
    evaluation = make_trainer(tmp_path, config).evaluation
    scores = [{"fid": 3.0, "recall": 0.2}, {"fid": 1.0, "recall": 0.1}, {"fid": 2.0, "recall": 0.3}]
    assert [evaluation.is_new_best(score) for score in scores] == [True, False, True]
    assert evaluation.best == 0.3


def test_every_chosen_metric_has_a_history_column_and_best_pt_follows_best_metric(tmp_path):
    config = tiny_config(epochs=2, eval_every=1, eval_samples=200, metrics="fid,kid,precision_recall",
                         best_metric="precision")
    trainer = make_trainer(tmp_path, config)
    trainer.fit()
    epochs = trainer.history["epoch"]
    assert all(len(epochs[column]) == 2 and None not in epochs[column]
               for column in ("fid", "kid", "precision", "recall"))
    best = checkpoint.load_checkpoint(RunDir(tmp_path).best)
    assert best["best"] == {"metric": "precision", "value": max(epochs["precision"])}
    newest_best = max(i for i, value in enumerate(epochs["precision"]) if value == max(epochs["precision"]))
    assert best["epoch"] == 1 + newest_best  # ties go to the newer epoch
    assert 0 <= min(epochs["precision"] + epochs["recall"]) and max(epochs["precision"] + epochs["recall"]) <= 1


NOTEBOOK_4S_STEP = notebook_function("04_training.ipynb", "train-step", "train_step")


@pytest.mark.parametrize("step", [plain_train_step, NOTEBOOK_4S_STEP], ids=["library", "notebook 4"])
def test_notebook_4s_step_equals_the_trainers_in_fp32(tmp_path, step):
    """Trainer.train_step is the plain step plus plumbing that, in fp32 without EMA, changes no weight: both the step
    notebook 4 defines in a cell and the library's copy of it (which times the steps). The plain side is set up as the
    notebook does it (fresh networks, Adam); same seed, batches and noise give bit-identical networks."""
    config = tiny_config(precision="fp32", ema_decay=0, channels_last=False)
    trainer = make_trainer(tmp_path, config)
    generator, discriminator, opt_g, opt_d, noise_rng = plain_side(trainer)
    for real in itertools.islice(trainer.loader.epoch(0), 5):
        z = make_noise(real.size(0), config.z_dim, generator=noise_rng)
        loss_d, loss_g = step(generator, discriminator, opt_g, opt_d, real, z)
        stats = trainer.train_step(real)
        assert torch.equal(torch.stack([loss_d, loss_g]), stats[:2])
    assert_same_networks(trainer, generator, discriminator)
