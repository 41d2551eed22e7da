"""Record the runs of notebook 4's failure-mode lab: `python tools/record_failure_runs.py [--only NAME ...]
[--epochs N] [--out DIR] [--runs-dir DIR]`.

Each is a real run of the course net on the 5,000 offline digits, in fp32 so that every machine trains the same
numbers, and differs from the healthy `demo` run in the settings named below. Its record
(`dcganlib.diagnostics.RecordedRun`: per-epoch losses, D's outputs, FID, the digits drawn, the last samples) goes
to dcganlib/assets/run-<name>.npz, where `dcganlib.diagnostics.shipped_run` finds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dcganlib import Config
from dcganlib.diagnostics import SHIPPED_RUNS, record_run
from dcganlib.runs import ASSETS

EPOCHS = 30
# name: (title shown in the lab, preset, the settings that differ from the preset's)
RUNS: dict[str, tuple[str, str, dict]] = {
    "healthy": ("healthy", "demo", {}),
    "never-starts": ("never starts", "mnist28", {}),
    "d-wins": ("D wins", "demo", {"lr": 5e-5, "lr_d": 1e-3}),
    "partial-collapse": ("partial collapse", "demo", {"z_dim": 1}),
    "unlabelled": ("run X", "demo", {"d_features": 8}),
}
assert tuple(RUNS) == SHIPPED_RUNS, "every shipped run has its recipe here"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=ASSETS, help="where the records go (default: the package's assets)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/failure-lab"), help="the runs' own folders")
    args = parser.parse_args(argv)
    for name in args.only:
        title, preset, settings = RUNS[name]
        config = Config.from_preset(preset, dataset="mnist-5k", epochs=args.epochs, precision="fp32", **settings)
        record = record_run(config, args.runs_dir / name, title)
        path = record.save(args.out / f"run-{name}.npz")
        print(f"{name}: {record.epochs['classes'][-1]} classes, FID {record.epochs['fid'][-1]:.1f} -> {path}")


if __name__ == "__main__":
    main()
