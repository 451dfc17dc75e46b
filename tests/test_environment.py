"""environment.yml is a thin wrapper over pyproject.toml; the CPU constraints pin torch."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_project_and_a_supported_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    minimum = tuple(int(v) for v in re.search(r">=\s*([\d.]+)", requires).group(1).split("."))
    assert tuple(int(v) for v in python.split("=")[1].split(".")) >= minimum
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-e .[dev]"]
    assert "pip" in deps


def test_cpu_constraints_pin_torch():
    pins = (ROOT / "constraints-cpu.txt").read_text().split()
    assert any(p.startswith("torch==") for p in pins)
