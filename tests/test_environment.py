"""The install is what the README says: one set of pins, mirrored everywhere."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        name, _, version = line.partition("==")
        assert version, f"unpinned requirement {line!r}: every dependency needs an exact == pin"
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_environment_yml_mirrors_requirements():
    requirements = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == requirements
    assert "python=3.11" in env["dependencies"]


def test_constraints_pin_every_requirement_identically():
    requirements = _pins((ROOT / "requirements.txt").read_text().splitlines())
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in requirements.items():
        assert constraints.get(name) == version, f"{name}: requirements {version}, constraints {constraints.get(name)}"


def test_torch_is_the_pinned_cpu_build():
    assert metadata.version("torch").split("+")[0] == "2.13.0"


    assert "torchvision" not in {d.metadata["Name"].lower() for d in metadata.distributions()}


def test_installed_versions_match_requirements():
    requirements = _pins((ROOT / "requirements.txt").read_text().splitlines())
    for name, version in requirements.items():
        installed = metadata.version(name).split("+")[0]
        assert installed == version, f"{name}: installed {installed}, pinned {version}"


def test_top_level_layout():
    for name in ["book", "notebooks", "mer", "data", "_config.yml", "_toc.yml", "environment.yml",
                 "README.md", "pyproject.toml", "Makefile", "tests", ".ci/run"]:
        assert (ROOT / name).exists(), f"{name} missing from the repository root"
