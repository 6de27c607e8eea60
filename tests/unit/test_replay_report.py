"""Replay report pieces without a broker: what the plots draw, read back from the written PNGs; summaries without labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ganomaly.evaluation import plots
from replay.report import agreement, model_summary
from replay.rescore import Row


def _drawn(tmp_path: Path, *args: Any) -> tuple[list[str], list[float]]:
    """Draw a histogram for real and return, from the written PNG, its legend texts and vertical lines' x positions."""
    path = tmp_path / "h.png"
    plots.plot_histogram(args[0], args[1], args[2], path, "t")
    shown = plots.drawn(path)
    assert shown["title"] == "t" and path.stat().st_size > 1000
    return shown["legend"], shown["vertical_lines"]


def test_histogram_draws_each_threshold_a_version_decided_with(tmp_path: Path) -> None:
    scores = np.random.default_rng(0).random(500)
    labels, lines = _drawn(tmp_path, None, scores, {0.7: 400, 0.8: 100})
    assert sorted(labels) == ["all 500 records", "threshold 0.7 (400 records)", "threshold 0.8 (100 records)"]
    assert lines == [0.7, 0.8]
    labels, lines = _drawn(tmp_path, (scores > 0.5).astype(int), scores, 0.5)
    assert sorted(labels) == ["anomaly", "normal", "threshold 0.5"] and lines == [0.5]
    labels, lines = _drawn(tmp_path, None, scores, None)
    assert "no threshold recorded" in labels and lines == []
    assert not any("nan" in t for t in labels)


def test_curves_say_what_they_draw(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y, s = (rng.random(200) > 0.7).astype(int), rng.random(200)
    plots.plot_roc(y, {"A AUROC 0.500": s, "B AUROC 0.600": (y, s * 2)}, tmp_path / "roc.png", "roc of t")
    plots.plot_pr(y, {"A AUPRC 0.300": s}, tmp_path / "pr.png")
    assert plots.drawn(tmp_path / "roc.png") == {"title": "roc of t", "legend": ["A AUROC 0.500", "B AUROC 0.600"], "vertical_lines": []}
    assert plots.drawn(tmp_path / "pr.png")["legend"] == ["A AUPRC 0.300"]


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
