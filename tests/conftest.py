"""Fixtures shared by several test files."""

import pytest
from tiny_generator import TinyGenerator


@pytest.fixture
def gen() -> TinyGenerator:
    """A TinyGenerator in training mode, as a generator is after training."""
    return TinyGenerator().train()
