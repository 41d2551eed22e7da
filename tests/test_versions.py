"""The declared dependency floors are versions the tests run on: Colab's, on which the Colab journey runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def colab_pins() -> dict[str, Version]:
    text = (ROOT / "tests" / "colab_versions.txt").read_text()
    return {name.lower(): Version(version) for name, version in re.findall(r"^([\w.-]+)==(\S+)$", text, re.MULTILINE)}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def test_requirements_txt_declares_what_the_package_does():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert sorted(str(Requirement(line)) for line in lines if line) == sorted(str(r) for r in declared())


def test_every_floor_is_colabs_version_which_the_journey_runs_on():
    pins = colab_pins()
    for requirement in declared():
        (floor,) = [spec for spec in requirement.specifier if spec.operator == ">="]
        pinned = pins[requirement.name.lower()]
        assert pinned in requirement.specifier, f"Colab's {requirement.name} {pinned} does not meet {requirement}"
        floor_parts = Version(floor.version).release
        assert pinned.release[: len(floor_parts)] == floor_parts, (
            f"{requirement}: the floor is below Colab's {pinned}, the oldest version tested; raise it")
