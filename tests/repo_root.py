"""The repository root, for the tests and the child processes they start (which import nothing heavier)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
