"""The declared dependency floors are versions the tests run on: those of the oldest Colab runtime version supported
(tests/colab_oldest_versions.txt, where `make test` runs the fast tier), and today's Colab meets them (the journey)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version
from repo_root import ROOT


def pins(name: str) -> dict[str, Version]:
    text = (ROOT / "tests" / name).read_text()
    return {name.lower(): Version(version) for name, version in re.findall(r"^([\w.-]+)==(\S+)$", text, re.MULTILINE)}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def test_requirements_txt_declares_what_the_package_does():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert sorted(str(Requirement(line)) for line in lines if line) == sorted(str(r) for r in declared())


def test_every_floor_is_the_oldest_supported_runtimes_version_and_todays_colab_meets_it():
    oldest, today = pins("colab_oldest_versions.txt"), pins("colab_versions.txt")
    for requirement in declared():
        (floor,) = [spec for spec in requirement.specifier if spec.operator == ">="]
        pinned = oldest[requirement.name.lower()]
        assert pinned in requirement.specifier, f"the oldest runtime's {requirement.name} {pinned} fails {requirement}"
        floor_parts = Version(floor.version).release
        assert pinned.release[: len(floor_parts)] == floor_parts, (
            f"{requirement}: the floor is below {pinned}, the oldest version tested; raise it")
        assert today[requirement.name.lower()] in requirement.specifier, f"today's Colab does not meet {requirement}"


def build_environment(tmp_path, min_free_gb: int, *pip_args: str):
    env_dir = tmp_path / "env"
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "colab_env.sh"), str(env_dir), "3.11", sys.executable, *pip_args],
        capture_output=True, text=True, env={**os.environ, "MIN_FREE_GB": str(min_free_gb)},
    )
    return env_dir, result


def test_an_environment_build_on_a_disk_too_small_stops_at_once_with_the_space_it_needs(tmp_path):
    env_dir, result = build_environment(tmp_path, 10**6, "--no-index", "pip")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "needs about 1000000 GB free" in result.stderr
    assert not env_dir.exists()
    env_dir, result = build_environment(tmp_path, 0, "--no-index", "pip")
    assert result.returncode == 0, result.stderr
    assert (env_dir / "bin" / "python").exists()
