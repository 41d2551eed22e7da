"""A pickle that runs code when fully unpickled: the loaders must refuse it without running it."""

from pathlib import Path


class Hostile:
    """Unpickling this would run code: it rebuilds itself by calling exec."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",)
