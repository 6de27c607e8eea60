"""Why one image scored what it did: its score against the threshold, and where it departs from normal.

The map is the model's smoothed per-pixel reconstruction error (ganomaly.model.anomaly_map),
brought back onto the frame as it arrived (ganomaly.data.overlay): the picture an operator needs
beside an alert. Computed on demand from the image's bytes and the artifact that scored it.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ganomaly.artifact import Artifact
from ganomaly.data.images import DecodeLimits, decode_image
from ganomaly.data.overlay import default_vmax, heatmap, overlay, png
from ganomaly.model import Scorer


@dataclass(frozen=True)
class Explanation:
    score: float
    threshold: float
    is_anomaly: bool
    model_version: str
    map: np.ndarray  # isize x isize, in the model's input value units
    frame: Image.Image  # the image as decoded (RGB), bounded when rendered
    vmax: float  # full colour of the rendered maps
    seconds: float  # decode + score + map

    def overlay_png(self, art: Artifact) -> bytes:
        return png(overlay(self.frame, self.map, art.input_spec, vmax=self.vmax))

    def heatmap_png(self, art: Artifact) -> bytes:
        return png(heatmap(self.map, art.input_spec, vmax=self.vmax, size=self.frame.size))

    def summary(self) -> dict[str, object]:
        return {"score": self.score, "threshold": self.threshold, "is_anomaly": self.is_anomaly, "model_version": self.model_version,
                "frame": list(self.frame.size), "map_max": float(self.map.max()), "vmax": self.vmax, "seconds": round(self.seconds, 4)}


def explain(art: Artifact, data: bytes, *, device: torch.device | str = "cpu", limits: DecodeLimits | None = None,
            scorer: Scorer | None = None) -> Explanation:
    """Decode ``data`` as the worker does (raises BadImage for what the worker dead-letters), score it, map it.

    A long-lived caller passes its one ``scorer`` of ``art``: making a Scorer converts the generator's
    weights in place (channels_last), which must never happen while another thread runs the same model."""
    t0 = time.perf_counter()
    x = decode_image(data, art.input_spec, limits)
    out = (scorer or art.scorer(device)).score(torch.from_numpy(x)[None], with_maps=True)
    assert out.maps is not None
    with Image.open(io.BytesIO(data)) as im:
        frame = im.convert("RGB")
    score = float(out.score[0])
    m = out.maps[0].numpy()
    # full colour at the larger of a quarter of the value range and the map's own 99th percentile: a normal
    # image stays dark, and a model that errs everywhere a little still shows where it errs most
    vmax = max(default_vmax(art.input_spec), float(np.percentile(m, 99)))
    return Explanation(score=score, threshold=art.threshold, is_anomaly=score > art.threshold, model_version=art.version,
                       map=m, frame=frame, vmax=vmax, seconds=time.perf_counter() - t0)
