"""Fixtures shared by the test files; the helpers they use live in kit.py."""

from collections.abc import Iterator

import pytest
from kit import FakeColab
from tiny_generator import TinyGenerator


@pytest.fixture
def gen() -> TinyGenerator:
    """A TinyGenerator in training mode, as a generator is after training."""
    return TinyGenerator().train()


@pytest.fixture
def fake_colab(tmp_path, monkeypatch) -> Iterator[FakeColab]:
    """This process as a fresh Colab runtime (see kit.FakeColab): Drive not mounted yet."""
    colab = FakeColab(tmp_path / "colab", monkeypatch)
    yield colab
    colab.close()
