"""Training in a child process that a parent kills at a printed event, then resumes; checkpoints compared bit for bit.

As a script, `python tools/child_run.py CONFIG_YAML RUN_DIR` trains in RUN_DIR (resuming from its newest
checkpoint) and prints `INFO {json}` once the Trainer is built, then `EPOCH n` after each epoch's checkpoint. Two
events make it wait, until the parent sends a line (go on) or kills it: `--pause-in-epoch E` prints `PAUSED` halfway
through epoch E, and `--hang-in-save E` prints `SAVING` once the save of epoch E has written its temp file, before
the rename. A trainer whose run was taken over by another prints `STOPPED <message>` and exits with code 3. Imported,
`Child` runs such a process and waits for its lines with a hard deadline, and `differences` compares two checkpoints.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time

import torch

from dcganlib import checkpoint
from dcganlib.config import Config
from dcganlib.runs import RunTakenOverError
from dcganlib.seeds import stream_seed
from dcganlib.train import Trainer


# --- parent side -------------------------------------------------------------------------------------------
class Child:
    """A subprocess whose output lines a thread collects, so that waiting for one line can time out."""

    def __init__(self, args: list[str], *, cwd=None, env=None):
        self.process = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._unread: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._unread.put(self.lines[-1])
        self._unread.put(None)  # end of output

    def wait_for(self, wanted: str, timeout: float) -> None:
        """Return once the child prints the line `wanted`; if it exits or the deadline passes first, raise."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._unread.get(timeout=left)
            except queue.Empty:
                break
            if line == wanted:
                return
            if line is None:
                raise RuntimeError(f"the child exited (code {self.process.wait()}) before printing {wanted!r}:\n"
                                   + self.tail())
        self.kill()
        raise TimeoutError(f"the child did not print {wanted!r} within {timeout:g} s:\n" + self.tail())

    def send(self, line: str) -> None:
        """Write one line to the child's stdin (a child paused on a read of stdin goes on)."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self, timeout: float) -> int:
        """Wait for the child to exit (killing it at the deadline, which raises); its exit code."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"the child did not finish within {timeout:g} s:\n" + self.tail()) from None
        self._close()
        return code

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, as when a Colab runtime is taken away."""
        self.process.kill()
        self.process.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=30)
        self.process.stdin.close()
        self.process.stdout.close()

    def tail(self, lines: int = 25) -> str:
        """The last lines the child printed."""
        return "\n".join(self.lines[-lines:])

    def info(self) -> dict:
        """The child's `INFO {json}` line, parsed ({} if it printed none)."""
        found = [line for line in self.lines if line.startswith("INFO ")]
        return json.loads(found[0].removeprefix("INFO ")) if found else {}


def differences(a, b, *, skip: tuple[str, ...] = (), where: str = "") -> list[str]:
    """Dotted paths at which two checkpoint states differ; tensors must match bit for bit (NaNs included)."""
    if where in skip:
        return []
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(_bits(a), _bits(b)))
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} (keys {sorted(map(str, a.keys() ^ b.keys()))})"]
        return [path for key in a for path in differences(a[key], b[key], skip=skip, where=_join(where, key))]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return [path for i, (x, y) in enumerate(zip(a, b, strict=True))
                for path in differences(x, y, skip=skip, where=f"{where}[{i}]")]
    return [] if a == b or (a != a and b != b) else [where]  # NaN != NaN, yet the two runs agree


def count_tensors(state) -> int:
    """How many tensors a checkpoint state holds (what `differences` compared)."""
    if isinstance(state, torch.Tensor):
        return 1
    if isinstance(state, dict):
        return sum(count_tensors(value) for value in state.values())
    if isinstance(state, list | tuple):
        return sum(count_tensors(value) for value in state)
    return 0


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().reshape(-1).contiguous().view(torch.uint8)


def _join(where: str, key) -> str:
    return f"{where}.{key}" if where else str(key)


# --- child side --------------------------------------------------------------------------------------------
def wait_for_the_parent() -> None:
    """Block until the parent sends a line (then go on) or kills this process; a closed stdin ends it."""
    if not sys.stdin.readline():
        sys.exit("the parent closed stdin instead of killing this process")


def pause_halfway(trainer: Trainer, epoch: int) -> None:
    """Halfway through `epoch` (1-based), print PAUSED and wait: that half epoch is trained and not saved."""
    step, halfway = trainer.train_step, len(trainer.loader) // 2

    def train_step(real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if trainer.epoch + 1 == epoch and trainer.batch_in_epoch == halfway:
            print("PAUSED", flush=True)
            wait_for_the_parent()
        return step(real, labels)

    trainer.train_step = train_step


def hang_in_save(epoch: int) -> None:
    """The save of `epoch`'s checkpoint prints SAVING once its temp file is written, and waits before the rename."""
    real_save = checkpoint.torch.save

    def save_then_wait(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        if isinstance(obj, dict) and obj.get("epoch") == epoch:
            print("SAVING", flush=True)
            wait_for_the_parent()

    checkpoint.torch.save = save_then_wait


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config YAML")
    parser.add_argument("run_dir")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the Trainer's choice)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms and cudnn.benchmark off (set CUBLAS_WORKSPACE_CONFIG too)")
    parser.add_argument("--pause-in-epoch", type=int, default=0, help="print PAUSED halfway through this epoch "
                        "and wait there")
    parser.add_argument("--hang-in-save", type=int, default=0, help="print SAVING inside this epoch's save, after "
                        "its temp file is written, and wait there")
    parser.add_argument("--break-resume", action="store_true",
                        help="sabotage, to show a check can fail: a resumed run forgets its noise RNG state")
    args = parser.parse_args(argv)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    if args.hang_in_save:
        hang_in_save(args.hang_in_save)
    trainer = Trainer(Config.load_yaml(args.config), args.run_dir, device=args.device, progress=False)
    info = {"device": str(trainer.device), "step": trainer.step, "batches_per_epoch": len(trainer.loader),
            "dtype": str(trainer.amp_dtype or torch.float32).removeprefix("torch."),
            "cudnn_benchmark_set_by_trainer": torch.backends.cudnn.benchmark}
    if args.deterministic:
        # The Trainer turns cudnn.benchmark on for CUDA. Autotuning may then pick a different convolution kernel
        # in each process, deterministic or not, so two processes could round differently: off for this run.
        torch.backends.cudnn.benchmark = False
    info.update(cudnn_benchmark=torch.backends.cudnn.benchmark,
                deterministic_algorithms=torch.are_deterministic_algorithms_enabled())
    if args.break_resume and trainer.step:
        config = trainer.config
        trainer.streams.noise.manual_seed(stream_seed(config.seed, "noise", config.seeding))  # rng["noise"] skipped
        info["sabotage"] = "noise RNG state not restored"
    print("INFO " + json.dumps(info), flush=True)
    if args.pause_in_epoch:
        pause_halfway(trainer, args.pause_in_epoch)
    try:
        trainer.fit(on_epoch_end=lambda t: print(f"EPOCH {t.epoch}", flush=True))
    except RunTakenOverError as stopped:
        print(f"STOPPED {stopped}", flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
