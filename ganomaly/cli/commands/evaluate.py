"""``ganomaly evaluate``: score a labelled test set with an artifact's own threshold.

Nothing is fitted to the test set: no min-max normalisation over it, no threshold
search on it. Writes a JSON report, a per-image CSV (index,label,score) and plots.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ganomaly.cli.commands.common import DATA_DIR, DATASET, DEVICE, Amp, DatasetName, Protocol, labelled_test_set
from ganomaly.device import resolve_device
from ganomaly.settings import LogLevel, OutputDir, OutputFile

if TYPE_CHECKING:
    import numpy as np

    from ganomaly.data.datasets import LabelledImages


class EvaluateSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_EVAL_", frozen=True)

    model: Path = Field(description="artifact directory")
    dataset: DatasetName = DATASET
    data_dir: Path = DATA_DIR
    folder: Path | None = Field(None, description="labelled folder (with --dataset folder): normal/ and anomaly/ subfolders, or an MVTec AD "
                                                  "category (test/good normal, every other test/<defect type> an anomaly; detected)")
    protocol: Protocol = Field("leave-one-out", description="leave-one-out: class K is the anomaly; one-class: class K is normal "
                                                            "(default: the model's own, from its manifest; else leave-one-out)")
    klass: int = Field(0, ge=0, description="the protocol's class K (default: the model's own, from its manifest; else 0)",
                       json_schema_extra={"cli": "--class"})
    report: OutputFile | None = Field(None, description="JSON report path")
    scores: OutputFile | None = Field(None, description="per-image CSV path (index,label,score)")
    plots: OutputDir | None = Field(None, description="directory for roc.png, pr.png, hist.png and examples.png (the worst-scored test images and their reconstructions; default: next to --report)")
    contact_sheet: OutputFile | None = Field(None, description="PNG path: the --sheet-top highest-scored images beside their anomaly maps")
    sheet_top: int = Field(24, ge=1, le=200, description="how many images the contact sheet shows")
    max_images: int | None = Field(None, ge=1, description="only the first N test images (e.g. to match a replayed stream)")
    batch_size: int = Field(256, ge=1)
    device: str = DEVICE
    amp: Amp | None = Field(None, description="bf16 or fp16 autocast for scoring (default fp32)")
    log_level: LogLevel = "info"


def write_scores_csv(path: Path, labels: np.ndarray, scores: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "label", "score"])
        for i, (y, s) in enumerate(zip(labels.tolist(), scores.tolist(), strict=True)):
            w.writerow([i, y, repr(float(s))])


def per_defect_metrics(test: LabelledImages, scores: np.ndarray, threshold: float) -> dict[str, dict[str, Any]]:
    """Each defect type against the normal images alone (MVTec AD's ``test/<defect type>`` against ``test/good``)."""
    import numpy as np

    from ganomaly.evaluation.metrics import detection_metrics

    groups = np.array(test.groups)
    normal = test.y == 0
    return {g: detection_metrics(test.y[normal | (groups == g)], scores[normal | (groups == g)], threshold)
            for g in sorted(set(groups[~normal].tolist()))}


def task_of(s: EvaluateSettings, manifest: dict[str, Any]) -> tuple[Protocol, int]:
    """The protocol and class to test: as given, else the ones the model was trained for (its manifest's
    data), so that ``evaluate --model M`` tests M on its own task, not on the defaults' class 0."""
    data = manifest.get("data") or {}
    given = s.model_fields_set
    protocol = s.protocol if "protocol" in given or data.get("protocol") not in get_args(Protocol) else data["protocol"]
    klass = s.klass if "klass" in given or not isinstance(data.get("class"), int) else data["class"]
    return protocol, klass


def run(s: EvaluateSettings) -> dict[str, Any]:
    from ganomaly.artifact import load_artifact
    from ganomaly.data.datasets import LabelledImages
    from ganomaly.evaluation.examples import write_examples
    from ganomaly.evaluation.metrics import detection_metrics
    from ganomaly.evaluation.plots import plot_histogram, plot_pr, plot_roc
    from ganomaly.training.fit import score_tensor

    device = resolve_device(s.device)
    art = load_artifact(s.model, device)
    protocol, klass = task_of(s, art.manifest)
    test, unreadable = labelled_test_set(s.dataset, s.data_dir, s.folder, protocol, klass, art.input_spec)
    if s.max_images:
        test = LabelledImages(test.x[: s.max_images], test.y[: s.max_images], test.ids[: s.max_images], test.groups[: s.max_images], test.layout)
    t0 = time.monotonic()
    scores = score_tensor(art.scorer(device, s.amp), test.x, s.batch_size)
    secs = time.monotonic() - t0
    report: dict[str, Any] = {
        "model": str(s.model),
        "model_version": art.version,
        "dataset": s.dataset,
        "data": str(s.folder if s.dataset == "folder" else s.data_dir),
        "protocol": None if s.dataset == "folder" else protocol,
        "class": None if s.dataset == "folder" else klass,
        "layout": test.layout,
        "metrics": detection_metrics(test.y, scores, art.threshold),
        "per_defect": per_defect_metrics(test, scores, art.threshold) if test.layout == "mvtec" else None,
        "calibration": art.calibration.to_dict(),
        "unreadable": unreadable,
        "scoring": {"device": str(device), "amp": s.amp, "seconds": round(secs, 3), "images_per_s": round(len(scores) / max(secs, 1e-9), 1)},
    }
    if s.scores:
        write_scores_csv(s.scores, test.y, scores)
    plots_dir = s.plots or (s.report.parent if s.report else None)
    if plots_dir is not None and report["metrics"]["auroc"] is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
        stem = s.report.stem + "-" if s.report else ""
        title = f"{art.version} {report['protocol'] or ''} {report['class'] if report['class'] is not None else ''}".strip()
        plot_roc(test.y, {f"AUROC {report['metrics']['auroc']:.3f}": scores}, plots_dir / f"{stem}roc.png", title)
        plot_pr(test.y, {f"AUPRC {report['metrics']['auprc']:.3f}": scores}, plots_dir / f"{stem}pr.png", title)
        plot_histogram(test.y, scores, art.threshold, plots_dir / f"{stem}hist.png", title)
        write_examples(test.x, test.y, scores, art.generator, art.input_spec.value_range, plots_dir / f"{stem}examples.png", device=device)
        report["plots"] = [str(plots_dir / f"{stem}{n}.png") for n in ("roc", "pr", "hist", "examples")]
    if s.contact_sheet is not None:
        from ganomaly.evaluation.sheet import top_scored_sheet

        s.contact_sheet.parent.mkdir(parents=True, exist_ok=True)
        top_scored_sheet(art.scorer(device, s.amp), test.x, scores, art.input_spec, n=s.sheet_top, threshold=art.threshold, labels=test.y,
                         ids=test.ids).save(s.contact_sheet)
        report["contact_sheet"] = str(s.contact_sheet)
    if s.report:
        s.report.parent.mkdir(parents=True, exist_ok=True)
        s.report.write_text(json.dumps(report, indent=2))
    m = report["metrics"]
    print(json.dumps({"model_version": art.version, "layout": test.layout, "auroc": m["auroc"], "auprc": m["auprc"], "precision": m["precision"],
                      "recall": m["recall"], "f1": m["f1"], "fpr": m["fpr"], "n": m["n"]}))
    return report

