"""Replay report pieces without a broker: the score histogram's threshold lines, summaries without labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ganomaly.evaluation import plots
from replay.report import agreement, model_summary
from replay.rescore import Row


def _drawn(monkeypatch: pytest.MonkeyPatch, *args: Any) -> tuple[list[str], list[float]]:
    """Draw a histogram for real and return its legend texts and vertical lines' x positions."""
    figs = []
    monkeypatch.setattr(plots.plt, "close", figs.append)
    plots.plot_histogram(*args)
    ax = figs[0].axes[0]
    xs = [ln.get_xdata()[0] for ln in ax.get_lines() if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]]
    return [t.get_text() for t in ax.get_legend().get_texts()], xs


def test_histogram_draws_each_threshold_a_version_decided_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scores = np.random.default_rng(0).random(500)
    labels, lines = _drawn(monkeypatch, None, scores, {0.7: 400, 0.8: 100}, tmp_path / "h.png", "t")
    assert sorted(labels) == ["all 500 records", "threshold 0.7 (400 records)", "threshold 0.8 (100 records)"]
    assert lines == [0.7, 0.8]
    labels, lines = _drawn(monkeypatch, (scores > 0.5).astype(int), scores, 0.5, tmp_path / "h.png", "t")
    assert sorted(labels) == ["anomaly", "normal", "threshold 0.5"] and lines == [0.5]
    labels, lines = _drawn(monkeypatch, None, scores, None, tmp_path / "h.png", "t")
    assert "no threshold recorded" in labels and lines == []
    assert not any("nan" in t for t in labels)


def _rows(a: list[float], b: list[float], thr: float = 0.5) -> list[Row]:
    rows = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        r = Row(id=f"t:0:{i}", partition=0, offset=i, timestamp_ms=0, key=None, source=None, label=None)
        r.scores, r.decisions, r.thresholds = {"A": x, "B": y}, {"A": x > thr, "B": y > thr}, {"A": thr, "B": thr}
        rows.append(r)
    return rows


def test_summary_and_agreement_need_no_labels() -> None:
    rows = _rows([0.1, 0.6, 0.7, 0.2], [0.9, 0.6, 0.1, 0.3])
    s = model_summary(rows, "A")
    assert (s["scored"], s["flagged"], s["flagged_share"], s["threshold"]) == (4, 2, 0.5, 0.5)
    assert s["score"]["max"] == 0.7 and s["score"]["p50"] == pytest.approx(0.4)
    ag = agreement(rows, "A", "B")
    assert (ag["agree"], ag["both_flagged"], ag["neither_flagged"], ag["only_champion_flagged"], ag["only_challenger_flagged"]) == (2, 1, 1, 1, 1)
    assert ag["agreement_rate"] == 0.5
    empty = model_summary([], "A")
    assert (empty["scored"], empty["flagged_share"], empty["score"]) == (0, None, None)
