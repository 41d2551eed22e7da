"""Data-parallel training under torchrun, for real: 2 CPU processes over gloo, killed, resumed and compared bit for bit.

Each run is `python -m torch.distributed.run --nproc-per-node 2 -m dcganlib train ...`, as a user types it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import child_processes
import pytest
import torch
from kit import free_port, wait_until
from repo_root import ROOT

from dcganlib import checkpoint, distributed, runs
from dcganlib.config import Config, ConfigError
from dcganlib.data import BatchLoader, TensorImages
from dcganlib.runs import RunDir
from dcganlib.train import Trainer
from tools import child_run

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not torch.distributed.is_gloo_available(),
                                reason="needs POSIX signals and the gloo backend")

# 10 steps of 500 digits an epoch, 250 per process.
CONFIG = Config.from_preset("mnist28", g_features=8, d_features=8, batch_size=500, sample_count=16, epochs=2)
DEADLINE = 120  # seconds for one torchrun job: far above the ~15 s it takes on two busy cores


def torchrun(run_dir: Path, processes: int = 2, config: Config = CONFIG) -> child_run.Child:
    """`torchrun --nproc-per-node 2 -m dcganlib train` on `config` in run_dir (resuming what is there)."""
    config_path = config.save_yaml(run_dir.parent / f"{run_dir.name}.yaml")
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
            "-m", "dcganlib", "train", "--config", str(config_path), "--run-dir", str(run_dir)]
    env = {**child_processes.environment(), "OMP_NUM_THREADS": "1"}
    return child_run.Child(args, cwd=ROOT, env=env)


def wait_for_file(path: Path, child: child_run.Child, timeout: float) -> None:
    """Return once `path` exists; fail if the child exits first or the deadline passes (and kill it)."""
    def ended() -> str | None:
        return None if child.process.poll() is None else f"code {child.process.returncode}:\n{child.tail()}"

    try:
        wait_until(path.exists, str(path), timeout, gone=ended)
    except AssertionError:
        child.kill()
        raise


def workers(launcher_pid: int) -> list[int]:
    """The pids of the processes torchrun started (its ranks)."""
    text = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text()
    return [int(pid) for pid in text.split()]


def same_checkpoints(a: Path, b: Path) -> list[str]:
    """Where two checkpoint files differ, wall times aside, and Python's and numpy's global RNGs: nothing seeds
    those, so every process starts them afresh and two runs differ there from the start (training draws none)."""
    unseeded = [f"rng{rank}.{name}" for rank in ("", ".ranks[0]", ".ranks[1]") for name in ("python", "numpy")]
    return child_run.differences(checkpoint.load_checkpoint(a), checkpoint.load_checkpoint(b),
                                 skip=("history.epoch.seconds", *unseeded))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, list[str]]:
    """An uninterrupted 2-process run of 2 epochs: its run dir and its output lines."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    child = torchrun(run_dir)
    assert child.finish(timeout=DEADLINE) == 0, child.tail()
    return run_dir, child.lines


@pytest.mark.slow
def test_two_processes_train_and_rank_0_writes_one_checkpoint_per_epoch(straight):
    run_dir, lines = straight
    assert [p.name for p in RunDir(run_dir).checkpoints()] == ["ckpt_epoch_0001.pt", "ckpt_epoch_0002.pt"]
    assert [p.name for p in RunDir(run_dir).frames()] == ["epoch_0001.png", "epoch_0002.png"]
    # One process speaks and writes: the other rank's messages would double these lines.
    assert sum(line.startswith("Starting fresh in") for line in lines) == 1
    assert sum(line.startswith("Trained to epoch 2") for line in lines) == 1
    saved = checkpoint.load_checkpoint(RunDir(run_dir).checkpoint(2))
    assert saved["history"]["batch"]["step"] == list(range(1, 21))  # 10 global batches of 500 an epoch
    assert len(saved["rng"]["ranks"]) == 2  # every rank's RNG states, for an exact resume
    assert json.loads(RunDir(run_dir).lock_file.read_text())["released"]  # released at the end


@pytest.mark.slow
def test_a_killed_rank_resumes_bit_identical_to_an_uninterrupted_run(straight, tmp_path):
    run_dir = tmp_path / "run"
    child = torchrun(run_dir)
    wait_for_file(RunDir(run_dir).checkpoint(1), child, DEADLINE)
    os.kill(workers(child.process.pid)[-1], signal.SIGKILL)  # one rank dies during epoch 2; torchrun ends the job
    assert child.finish(timeout=DEADLINE) != 0
    assert [p.name for p in RunDir(run_dir).checkpoints()] == ["ckpt_epoch_0001.pt"]

    resumed = torchrun(run_dir)
    assert resumed.finish(timeout=DEADLINE) == 0, resumed.tail()
    assert any(line.startswith("Resumed from epoch 1") for line in resumed.lines), resumed.tail()
    assert same_checkpoints(RunDir(straight[0]).checkpoint(2), RunDir(run_dir).checkpoint(2)) == []


@pytest.mark.slow
def test_every_rank_stops_when_another_machine_takes_the_run_over(tmp_path, monkeypatch):
    """Rank 0 reads the lock before the epoch's writes, and every rank stops with it: none waits forever."""
    run_dir = tmp_path / "run"
    child = torchrun(run_dir, config=dataclasses.replace(CONFIG, batch_size=100, epochs=3))  # 50 steps an epoch
    wait_for_file(RunDir(run_dir).checkpoint(1), child, DEADLINE)
    monkeypatch.setattr(runs, "host_name", lambda: "colab-vm-9")
    runs.RunLock(run_dir, log=lambda message: None).acquire()
    assert child.finish(timeout=DEADLINE) != 0
    stopped = [line for line in child.lines if "was taken over by process" in line]
    assert len(stopped) == 2 and all(line.startswith("error: ") and "on host colab-vm-9" in line for line in stopped)
    assert not RunDir(run_dir).checkpoint(2).exists() and not RunDir(run_dir).frame(2).exists()


@pytest.mark.slow
def test_two_process_checkpoint_resumes_on_one_process_with_a_warning(straight, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(straight[0], run_dir)
    RunDir(run_dir).checkpoint(2).unlink()
    with pytest.warns(UserWarning, match="written by 2 process.*resumes on 1.*no longer bit-exact"):
        trainer = Trainer(CONFIG, run_dir, progress=False, log=lambda message: None)
    assert (trainer.epoch, trainer.step) == (1, 10)
    history = trainer.fit()
    assert history["batch"]["step"] == list(range(1, 21)) and trainer.epoch == 2
    # The same global batches and noise as on two processes: close to that run, though not bit for bit.
    two = checkpoint.load_checkpoint(RunDir(straight[0]).checkpoint(2))["history"]["batch"]["loss_d"]
    assert history["batch"]["loss_d"][:10] == two[:10]
    assert history["batch"]["loss_d"][10:] == pytest.approx(two[10:], rel=0.05)


def numbered_images(count: int) -> TensorImages:
    """Images whose every pixel is the image's index, so a batch tells which images it holds."""
    return TensorImages(torch.arange(count, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous())


def indices(batch: torch.Tensor) -> list[int]:
    return batch[:, 0, 0, 0].add(1).mul(127.5).round().long().tolist()  # undo the [-1, 1] scaling


@pytest.mark.parametrize("world_size", [2, 4])
@pytest.mark.parametrize("start_batch", [0, 3])
def test_each_rank_takes_a_disjoint_share_of_the_single_process_batch(world_size, start_batch):
    images = numbered_images(200)
    single = BatchLoader(images, 40, seed=3)
    shards = [BatchLoader(images, 40, seed=3, rank=rank, world_size=world_size) for rank in range(world_size)]
    assert all(len(shard) == len(single) for shard in shards)  # batch_size is the global batch
    for epoch in (0, 1):
        whole = [indices(batch) for batch in single.epoch(epoch, start_batch)]
        parts = [[indices(batch) for batch in shard.epoch(epoch, start_batch)] for shard in shards]
        assert len(whole) == 5 - start_batch
        for step, batch in enumerate(whole):
            shares = [part[step] for part in parts]
            assert all(len(share) == 40 // world_size for share in shares)
            assert sum(shares, []) == batch  # disjoint, in rank order, together the single-process batch


def test_uneven_shares_are_refused():
    with pytest.raises(ValueError, match="split evenly"):
        BatchLoader(numbered_images(200), 30, rank=0, world_size=4)


def test_noise_shares_make_the_whole_batch():
    z = torch.randn(12, 5)
    assert distributed.share_of(z, distributed.SINGLE) is z
    parts = [distributed.share_of(z, distributed.Group(rank, 3)) for rank in range(3)]
    assert torch.equal(torch.cat(parts), z)


def test_sync_batch_norm_needs_gpus_and_is_a_no_op_in_one_process():
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert distributed.batch_norm(module, distributed.SINGLE, torch.device("cpu"), sync=True) is module
    assert distributed.batch_norm(module, distributed.Group(0, 2), torch.device("cpu"), sync=False) is module
    with pytest.raises(ConfigError, match="sync_batch_norm: SyncBatchNorm needs CUDA GPUs"):
        distributed.batch_norm(module, distributed.Group(0, 2), torch.device("cpu"), sync=True)
