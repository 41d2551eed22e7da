"""A stand-in for Colab's `google.colab` package, for the runtime simulator in tests/colab_sim.py.

Only what dcganlib and its notebooks touch: `drive.mount`, `drive.flush_and_unmount` and
`output.enable_custom_widget_manager`. Every call is appended to the file named by COLAB_SIM_LOG, so a test can
see what a notebook asked of Colab.
"""

import os
from pathlib import Path


def record(event: str) -> None:
    """Append one line to the simulator's call log."""
    with Path(os.environ["COLAB_SIM_LOG"]).open("a", encoding="utf-8") as log:
        log.write(event + "\n")
