"""Imports go one way: the CLI on top, the processes beside each other, the library at the bottom.

- the library ``ganomaly`` (except ``ganomaly.cli``) never imports a process (``worker``,
  ``trainer``, ``replay``, ``producers``, ``console``) nor ``ganomaly.cli``;
- a process never imports another process nor ``ganomaly.cli``;
- ``ganomaly.devstack`` (the local broker, from the ``dev`` extra) is imported by the CLI only.

Every import statement counts, the ones inside functions too (most of the CLI's are), so the
check reads the source (``ast``) rather than what an import happens to load.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("worker", "trainer", "replay", "producers", "console")
PACKAGES = ("ganomaly", *PROCESSES)
# ``python -m ganomaly`` is the command line's second door: it belongs to the CLI layer.
CLI_LAYER = ("ganomaly.cli", "ganomaly.__main__")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (absolute)
    where: str  # path:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def imports_of(path: Path) -> list[Import]:
    """Every import in one file, relative ones made absolute."""
    source = _module(path)
    package = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # ``from pkg import name`` may import the submodule pkg.name: count both
            targets = [module, *(f"{module}.{a.name}" for a in node.names if a.name != "*")]
        else:
            continue
        out += [Import(source, t, f"{path.relative_to(ROOT)}:{node.lineno}") for t in targets]
    return out


def all_imports() -> list[Import]:
    return [i for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) for i in imports_of(p)]


def violations(imports: list[Import]) -> list[str]:
    bad = []
    for i in imports:
        if _within(i.source, *CLI_LAYER):
            continue  # the CLI is on top: it may import anything
        top = i.source.split(".")[0]
        if top == "ganomaly":
            forbidden = (*PROCESSES, *CLI_LAYER)
        else:
            forbidden = (*(p for p in PROCESSES if p != top), *CLI_LAYER)
        if _within(i.target, *forbidden):
            bad.append(str(i))
        elif _within(i.target, "ganomaly.devstack") and i.source != "ganomaly.devstack":
            bad.append(f"{i} (the dev broker is the CLI's and the tests' only)")
    return bad


def test_imports_go_one_way() -> None:
    imports = all_imports()
    assert len({i.source for i in imports}) > 50  # the walk really saw the code
    bad = violations(imports)
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


@pytest.mark.parametrize(("source", "code", "caught"), [
    ("ganomaly/registry.py", "def f():\n    from worker.app import Worker\n", True),  # a function-level import counts
    ("ganomaly/data/images.py", "from ..cli import main\n", True),  # relative, two levels up
    ("ganomaly/data/images.py", "from ganomaly import cli\n", True),  # the package named as a name
    ("producers/cli.py", "import replay.reader\n", True),  # one process into another
    ("trainer/job.py", "from ganomaly.cli.commands import models\n", True),
    ("worker/app.py", "from ganomaly.devstack import free_port\n", True),
    ("worker/app.py", "from worker.batcher import Batcher\nfrom ganomaly.registry import Registry\n", False),
    ("ganomaly/cli/commands/models.py", "from trainer.job import run_once\nfrom ganomaly.devstack import stop\n", False),
])
def test_the_check_catches_what_it_should(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, code: str, caught: bool) -> None:
    path = tmp_path / source
    path.parent.mkdir(parents=True)
    path.write_text(code)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert bool(violations(imports_of(path))) is caught
