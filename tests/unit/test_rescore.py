"""Replay's rescore path compares models that expect different inputs."""

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from ganomaly.artifact import load_artifact, save_artifact
from ganomaly.data.images import MNIST_STD_RANGE, TANH_RANGE, DecodeLimits, InputSpec, decode_image
from ganomaly.model import GanomalyConfig, Generator, calibrate
from replay.rescore import rescore


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_each_model_scores_inputs_decoded_with_its_own_spec(tmp_path: Path) -> None:
    specs = [InputSpec(value_range=MNIST_STD_RANGE), InputSpec(value_range=TANH_RANGE)]
    arts = []
    for i, spec in enumerate(specs):
        torch.manual_seed(i)
        save_artifact(tmp_path / str(i), Generator(GanomalyConfig(nz=8, ngf=8)), spec, calibrate(np.linspace(0, 1, 50)), data={})
        arts.append(load_artifact(tmp_path / str(i)))
    models = [(a, a.scorer(), a.threshold) for a in arts]
    values = [_png(s) for s in range(5)] + [b"not an image"]
    records = [SimpleNamespace(topic="t", partition=0, offset=o, timestamp=0, key=None, headers=[], value=v) for o, v in enumerate(values)]
    limits = DecodeLimits(channel_policy="convert")
    rows, unreadable, _ = rescore(records, models, batch_size=2, limits=limits)
    assert len(rows) == 5 and sum(unreadable.values()) == 1
    for art, scorer, _ in models:
        want = scorer.score(torch.from_numpy(np.stack([decode_image(v, art.input_spec, limits) for v in values[:5]]))).score
        got = torch.tensor([r.scores[art.version] for r in rows])
        torch.testing.assert_close(got, want)
