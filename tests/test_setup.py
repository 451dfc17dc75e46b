"""What `make setup` and `make test` set up: the chromium step (.ci/ensure-chromium) and stripped notebooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENSURE_CHROMIUM = ROOT / ".ci" / "ensure-chromium"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BASH = shutil.which("bash")


def fake_tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def run_ensure(tmp_path: Path, uid: int, tools: dict[str, str]) -> subprocess.CompletedProcess:
    """The step with PATH holding only fake tools (no real chromium, apt-get or sudo can be reached)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake_tool(bin_dir, "id", f"echo {uid}")
    for name, body in tools.items():
        fake_tool(bin_dir, name, body)
    env = {"PATH": str(bin_dir), "CALLS": str(tmp_path / "calls")}
    return subprocess.run([BASH, str(ENSURE_CHROMIUM)], env=env, capture_output=True, text=True, timeout=60)


# apt-get that records its arguments and, on install, puts a chromium on PATH.
FAKE_APT = (
    'echo "apt-get $*" >> "$CALLS"; case "$*" in *install*chromium*) '
    f'printf "#!/bin/true\\n" > "${{0%/*}}/chromium"; {shutil.which("chmod")} +x "${{0%/*}}/chromium";; esac'
)


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_chromium_present_means_nothing_to_do(tmp_path):
    result = run_ensure(tmp_path, 1000, {"chromium": "true", "apt-get": FAKE_APT})
    assert result.returncode == 0 and calls(tmp_path) == []


def test_root_without_chromium_installs_it_with_apt(tmp_path):
    result = run_ensure(tmp_path, 0, {"apt-get": FAKE_APT})
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path)[0] == "apt-get update -qq"
    assert "install -y -qq chromium" in calls(tmp_path)[1]
    assert (tmp_path / "bin" / "chromium").exists()


def test_passwordless_sudo_installs_it_through_sudo(tmp_path):
    sudo = 'echo "sudo $*" >> "$CALLS"; [ "$1" = -n ] && shift; [ "$1" = true ] && exit 0; export "$1"; shift; exec "$@"'
    result = run_ensure(tmp_path, 1000, {"sudo": sudo, "apt-get": FAKE_APT})
    assert result.returncode == 0, result.stderr
    assert "sudo -n DEBIAN_FRONTEND=noninteractive apt-get update -qq" in calls(tmp_path)
    assert any(c.startswith("apt-get install") for c in calls(tmp_path))


@pytest.mark.parametrize("sudo", [None, "exit 1"], ids=["no sudo", "sudo wants a password"])
def test_no_way_to_install_stops_with_one_clear_line(tmp_path, sudo):
    tools = {"apt-get": FAKE_APT, **({"sudo": sudo} if sudo else {})}
    result = run_ensure(tmp_path, 1000, tools)
    assert result.returncode != 0  # never a silent skip
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "chromium" in lines[0] and "apt-get install chromium" in lines[0]
    assert not any(c.startswith("apt-get") for c in calls(tmp_path))


def test_make_test_and_ci_share_the_chromium_step():
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "test", "VENV=/nonexistent/venv"], capture_output=True, text=True
    ).stdout
    assert ".ci/ensure-chromium" in dry_run and "pytest" in dry_run
    assert dry_run.index(".ci/ensure-chromium") < dry_run.index("pytest")  # chromium first, then the tests
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text()  # one step, in one place


def _outputs(notebook_json: str) -> list[str]:
    cells = json.loads(notebook_json)["cells"]
    return [
        f"cell {k}" for k, c in enumerate(cells) if c.get("outputs") or c.get("execution_count") is not None
    ]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_notebooks_reach_git_without_outputs():
    """What `git commit` would store (the index) has no outputs; without the nbstripout filter installed
    (`make setup` installs it) the working-tree files must be stripped too, as the next `git add` stores them."""
    assert NOTEBOOKS
    in_git = _git("rev-parse", "--git-dir").returncode == 0
    filtered = in_git and _git("config", "filter.nbstripout.clean").returncode == 0
    for path in NOTEBOOKS:
        rel = path.relative_to(ROOT).as_posix()
        staged = _git("show", f":{rel}") if in_git else None
        if staged is not None and staged.returncode == 0:
            assert not _outputs(staged.stdout), (
                f"{rel}: outputs staged for commit; run `make setup` and `git add` it again"
            )
        if not filtered:
            found = _outputs(path.read_text())
            assert not found, (
                f"{rel}: outputs in {found} and no nbstripout filter; run `make setup` (or nbstripout {rel})"
            )


def test_stripping_check_catches_an_executed_notebook():
    executed = json.loads(NOTEBOOKS[0].read_text())
    code = next(c for c in executed["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 1
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["x\n"]}]
    assert _outputs(json.dumps(executed)) != []


def test_make_setup_installs_nbstripout_and_pyproject_lists_it():
    assert "nbstripout --install" in (ROOT / "Makefile").read_text()
    assert '"nbstripout"' in (ROOT / "pyproject.toml").read_text()
    assert shutil.which("nbstripout", path=os.path.dirname(os.sys.executable)) or shutil.which("nbstripout")


def test_install_venv_passes_pip_configuration_on_to_uv(tmp_path, monkeypatch):
    """uv ignores pip's configuration; without its local wheel folder uv would fetch the CUDA build of torch."""
    from importlib.machinery import SourceFileLoader

    install = SourceFileLoader("install_venv", str(ROOT / ".ci" / "install-venv")).load_module()
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nfind-links = /from/file\nextra-index-url = file:///a file:///b\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/from/env")
    config = install.pip_config(Path(shutil.which("python3")))
    assert config["find-links"] == ["/from/env"]  # the environment wins, as in pip
    assert config["extra-index-url"] == ["file:///a", "file:///b"]
    options = install.uv_options(config)
    assert options[options.index("--index-url") + 1] == "https://mirror.example/simple"
    assert options[options.index("--find-links") + 1] == "/from/env"
    assert options.count("--extra-index-url") == 2
