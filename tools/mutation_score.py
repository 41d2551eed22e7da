"""Mutation score per module from mutmut 3's results in mutants/: killed / (total - equivalent), survivors listed.

Run after `mutmut run` (see `make mutate`). Mutants judged equivalent (no test can tell them from the original)
are listed with a reason in tests/equivalent_mutants.md as lines `- dcganlib.module.x_function__mutmut_N: why`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ("losses", "latent", "metrics", "checkpoint", "step")
KILLED_CODES = {1, 3}  # a failing test, or pytest's internal error, kills the mutant (mutmut's own reading)
STATUS = {0: "survived", None: "not checked", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -9: "segfault", -11: "segfault"}
EQUIVALENT_LINE = re.compile(r"^- `?(dcganlib\.[\w.]+__mutmut_\d+)`?:")


def equivalent_mutants(path: Path) -> set[str]:
    """Mutant names listed as equivalent in `path` (none if it does not exist)."""
    if not path.is_file():
        return set()
    return {m.group(1) for line in path.read_text().splitlines() if (m := EQUIVALENT_LINE.match(line))}


def results(mutants_dir: Path, module: str) -> dict[str, int | None]:
    """Exit code by mutant name for one module (empty when mutmut has not run on it)."""
    meta = mutants_dir / "dcganlib" / f"{module}.py.meta"
    return json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder (default: ./mutants)")
    parser.add_argument("--equivalent", type=Path, default=REPO / "tests" / "equivalent_mutants.md")
    parser.add_argument("--min-score", type=float, default=0.0, help="exit 1 if a module scores below this (%%)")
    parser.add_argument("--list", action="store_true", help="also list every mutant that was not killed")
    args = parser.parse_args(argv)
    equivalent = equivalent_mutants(args.equivalent)
    print(f"{'module':<12}{'killed':>8}{'total':>8}{'equiv':>8}{'score':>9}  not killed")
    failed = False
    for module in MODULES:
        codes = results(args.mutants, module)
        if not codes:
            print(f"{module:<12}{'-':>8}{'-':>8}{'-':>8}{'-':>9}  (no results: run mutmut on it)")
            failed = failed or args.min_score > 0
            continue
        counted = {name: code for name, code in codes.items() if name not in equivalent}
        killed = sum(code in KILLED_CODES for code in counted.values())
        score = 100.0 * killed / len(counted) if counted else 100.0
        others: dict[str, int] = {}
        for code in counted.values():
            if code not in KILLED_CODES:
                others[STATUS.get(code, "suspicious")] = others.get(STATUS.get(code, "suspicious"), 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(others.items())) or "-"
        print(f"{module:<12}{killed:>8}{len(counted):>8}{len(codes) - len(counted):>8}{score:>8.1f}%  {summary}")
        if args.list:
            for name, code in sorted(counted.items()):
                if code not in KILLED_CODES:
                    print(f"    {name}: {STATUS.get(code, 'suspicious')}")
        failed = failed or score < args.min_score
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
