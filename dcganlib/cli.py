"""Command line: `python -m dcganlib train|sample|gif|plot|export|push`. Re-running `train` resumes.

`torchrun --nproc-per-node N -m dcganlib train ...` trains data-parallel on N processes (GPUs, or CPU with gloo).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from . import checkpoint, distributed, hub, runs, viz
from .colab import DriveUnavailableError
from .config import PRESETS, ArchitectureMismatchError, Config, ConfigError, flag_fields
from .data import DatasetUnavailableError
from .devices import DeviceUnavailableError
from .models import generate, make_noise
from .onnx_export import export_onnx
from .pretrained import export_generator, load_generator, push_generator
from .runs import RunDir
from .train import Trainer


class UsageError(ValueError):
    """An option value that cannot be used (a count below 1, a class the generator does not have); the message
    names the option."""


# Errors a user can fix; anything else is a bug and keeps its traceback (so no bare ValueError here). An ImportError
# is an optional package not installed (onnx, huggingface_hub): its message says what to install.
USER_ERRORS = (ImportError, UsageError, ConfigError, checkpoint.CheckpointError, DatasetUnavailableError,
               ArchitectureMismatchError, DeviceUnavailableError, DriveUnavailableError, FileNotFoundError,
               runs.RunDirInUseError, runs.RunTakenOverError, runs.RunDirUnwritableError, hub.HubNameError,
               hub.HubError)


def _train(args) -> None:
    run_dir = RunDir.open(args.run_dir)  # opened once: the checkpoint search, the Trainer and the report share it
    given = {field.name: getattr(args, field.name) for field in flag_fields()}
    overrides = {name: value for name, value in given.items() if value is not None}
    requested = Config.load_yaml(args.config) if args.config else None  # a bad file fails before any loading
    found = None if args.fresh else checkpoint.load_latest(run_dir)
    if requested is not None:
        config = Config.from_dict({**requested.to_dict(), **overrides})
    elif found and not args.preset:  # a bare re-run resumes with the checkpoint's config and the options given
        config = Config.from_dict({**checkpoint.TrainingState.from_dict(found[0]).config, **overrides})
    else:
        config = Config.from_preset(args.preset or "mnist28", **overrides)
    if args.conditional and not config.num_classes:
        config = config.conditional()
    started = time.monotonic()
    try:  # under torchrun: one such process per rank, of which rank 0 writes
        trainer = Trainer(config, run_dir, resume=not args.fresh, device=args.device, found=found)
        trainer.fit()
        trainer.ensure_run_held()  # the report is written only by a trainer that still owns the run
    finally:
        distributed.leave()
    if not trainer.step or not trainer.group.is_main:  # --epochs 0 on a new run: nothing trained, nothing to plot
        return
    paths = viz.write_report(trainer.run, trainer.history, trainer.sampling_generator, trainer.fixed_noise,
                             nrow=trainer.grid_columns, labels=trainer.fixed_labels)
    print(f"Trained to epoch {trainer.epoch} in {time.monotonic() - started:.0f} s. Wrote:")
    for path in [*paths.values(), trainer.run.located(trainer.newest_checkpoint)]:
        print(f"  {path}")


def _require_counts(args, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be a whole number of at least 1, got {getattr(args, name)}")


def _sample(args) -> None:
    _require_counts(args, "n", "nrow")
    generator = load_generator(args.run_dir)
    noise = make_noise(args.n, generator.z_dim, seed=args.seed)
    labels = _labels(generator, args.label, args.n)
    print(viz.save_grid(generate(generator, noise, labels), args.out, nrow=args.nrow))


def _labels(generator, label: str | None, n: int) -> torch.Tensor | None:
    """The classes to draw: all `label` (a name or a number), or for a conditional generator without one, every
    class in turn."""
    if not generator.num_classes:
        if label is not None:
            raise UsageError(f"--label {label}: this generator is unconditional; leave out --label")
        return None
    if label is None:
        return torch.arange(n) % generator.num_classes
    try:
        return torch.full((n,), generator.label(label))
    except ValueError as error:
        raise UsageError(f"--label {label}: {error}") from None


def _gif(args) -> None:
    _require_counts(args, "fps")
    print(viz.make_gif(args.run_dir, args.out, fps=args.fps))


def _plot(args) -> None:
    history = checkpoint.TrainingState.from_dict(checkpoint.require_latest(args.run_dir)[0]).history
    out_dir = args.out_dir or args.run_dir
    out = RunDir(out_dir)
    for plot, path in ((viz.plot_losses, out.losses), (viz.plot_d_outputs, out.d_outputs)):
        plot(history, path)
        print(path)


def _export(args) -> None:
    if args.format == "pt":
        print(export_generator(args.run_dir, args.out))
        return
    out = args.out or RunDir.of(args.run_dir).generator.with_suffix(".onnx")
    print(export_onnx(load_generator(args.run_dir), out))


def _push(args) -> None:
    print(push_generator(args.run_dir, args.repo, private=args.private))


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One option per Config field that carries a `flag` help text: `batch_size` becomes `--batch-size`."""
    for field in flag_fields():
        options = {"help": field.metadata["flag"]}
        if "choices" in field.metadata:
            options["choices"] = field.metadata["choices"]
        if isinstance(field.default, bool):
            options["action"] = argparse.BooleanOptionalAction
        else:  # the default's type: int for --epochs, float for --lr, str for --dataset
            options["type"] = type(field.default)
        parser.add_argument("--" + field.name.replace("_", "-"), **options)


def _add_train_command(commands) -> None:
    train = commands.add_parser("train", help="train, or resume the run in --run-dir")
    train.add_argument("--run-dir", required=True, help="folder for checkpoints, samples and plots")
    train.add_argument("--preset", choices=sorted(PRESETS), help="network preset (default mnist28 for a new run)")
    train.add_argument("--config", help="a config.yaml to start from (presets and flags override it)")
    _add_config_flags(train)
    train.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda, else mps, else cpu)")
    train.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start over")
    train.add_argument("--conditional", action="store_true",
                       help="a conditional GAN over the data set's classes (Config.conditional: conditional "
                       "BatchNorm in G, a projection D with a classifier, D at least 32 wide)")
    train.set_defaults(func=_train)


def _add_sharing_commands(commands) -> None:
    """`export` (a file for load_generator, or ONNX) and `push` (to the Hugging Face Hub)."""
    export = commands.add_parser("export", help="write the generator alone, for sampling and latent walks (pt) or "
                                 "for runtimes without PyTorch (onnx)")
    export.add_argument("--run-dir", required=True)
    export.add_argument("--format", choices=["pt", "onnx"], default="pt",
                        help="pt: for load_generator (default); onnx: an ONNX graph of G in eval mode")
    export.add_argument("--out", help="default <run-dir>/generator.pt, or generator.onnx")
    export.set_defaults(func=_export)

    push = commands.add_parser("push", help="upload a run's generator to the Hugging Face Hub with its samples and a "
                               "model card (load it back with load_generator(\"hf://user/name\"))")
    push.add_argument("--run-dir", required=True, help="a run dir, or a file written by export")
    push.add_argument("--repo", required=True, help="the Hub model repo, user/name (created when new)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.set_defaults(func=_push)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="python -m dcganlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_command(commands)
    sample = commands.add_parser("sample", help="write a grid of samples from a run's newest checkpoint")
    sample.add_argument("--run-dir", required=True)
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--nrow", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--label", help="a conditional run's class to draw, by name or number (default: each in "
                        "turn)")
    sample.add_argument("--out", default="samples.png")
    sample.set_defaults(func=_sample)

    gif = commands.add_parser("gif", help="turn a run's per-epoch sample grids into a GIF")
    gif.add_argument("--run-dir", required=True)
    gif.add_argument("--out", help="default <run-dir>/progress.gif")
    gif.add_argument("--fps", type=int, default=4)
    gif.set_defaults(func=_gif)

    plot = commands.add_parser("plot", help="plot a run's loss and D-output curves")
    plot.add_argument("--run-dir", required=True)
    plot.add_argument("--out-dir", help="default: the run dir")
    plot.set_defaults(func=_plot)

    _add_sharing_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and return 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume from the newest checkpoint", file=sys.stderr)
        return 130
    return 0
