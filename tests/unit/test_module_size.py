"""No module above 350 lines unless its docstring says why (a line starting ``Long because:``).

Small modules named for what they hold are the house style; a long one is allowed when its
reason is written where the next reader looks first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ganomaly", "worker", "trainer", "replay", "producers", "console")
LIMIT = 350
REASON = "Long because:"


def too_long(path: Path, limit: int = LIMIT) -> str | None:
    """Why ``path`` breaks the rule, or None when it keeps it."""
    text = path.read_text()
    lines = len(text.splitlines())
    if lines <= limit:
        return None
    doc = ast.get_docstring(ast.parse(text)) or ""
    if any(line.strip().startswith(REASON) for line in doc.splitlines()):
        return None
    return f"{path.relative_to(ROOT)}: {lines} lines (limit {limit}) and no '{REASON} ...' line in its docstring"


def test_no_module_is_long_without_a_reason() -> None:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50
    bad = [why for p in files if (why := too_long(p))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("text", "ok"), [
    ('"""Short."""\n' + "x = 1\n" * 10, True),
    ('"""Big."""\n' + "x = 1\n" * 400, False),
    ('"""Big.\n\nLong because: one state machine, split it and the states scatter.\n"""\n' + "x = 1\n" * 400, True),
    ("# Long because: a comment is not the docstring\n" + "x = 1\n" * 400, False),
])
def test_the_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, ok: bool) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / "m.py"
    path.write_text(text)
    assert (too_long(path) is None) is ok
