"""Camera frames: JPEG draft decoding as part of the input spec, and channel conversions made visible."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import structlog
import torch
from PIL import Image
from prometheus_client import generate_latest

from ganomaly.artifact import load_artifact, read_manifest, save_artifact
from ganomaly.cli.main import main
from ganomaly.data.datasets import load_folder
from ganomaly.data.images import BadImage, Converted, DecodeLimits, InputSpec, decode_image, decode_many_pixels, pixels_to_input
from ganomaly.model import GanomalyConfig, Generator, calibrate
from tests.camera_frames import camera_frame
from tests.poison import poison_corpus
from worker.conversions import ChannelConversions
from worker.metrics import WorkerMetrics
from worker.settings import WorkerSettings

FULL = InputSpec(isize=128, channels=3, resize="letterbox")
DRAFT = InputSpec(isize=128, channels=3, resize="letterbox", jpeg_draft=True)


def test_draft_decodes_a_camera_frame_within_a_pixel_level_of_a_full_decode() -> None:
    diffs = []
    for i in range(12):
        data = camera_frame(i, anomaly=i % 3 == 0)
        full, draft = decode_image(data, FULL), decode_image(data, DRAFT)
        assert full.shape == draft.shape == (3, 128, 128)
        diffs.append(np.abs(full - draft).mean() * 255 / 2)  # the (-1, 1) range back in pixel levels
        # letterbox of 4:3: the same 16-row borders either way (pixel 0 -> -1)
        assert (draft[:, :16] == -1).all() and (draft[:, -16:] == -1).all()
    assert 0 < np.mean(diffs) < 1.0, diffs  # draft really ran (not identical), and stays within 1/255 on average


@pytest.mark.parametrize("resize", ["bilinear-stretch", "letterbox", "pad"])
def test_draft_leaves_images_it_cannot_shrink_and_other_formats_alone(resize: str) -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)  # less than twice 32: no DCT scale applies
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(small).save(buf, format=fmt)
        a = decode_image(buf.getvalue(), InputSpec(channels=3, resize=resize))
        b = decode_image(buf.getvalue(), InputSpec(channels=3, resize=resize, jpeg_draft=True))
        assert np.array_equal(a, b), fmt
    png = io.BytesIO()
    Image.open(io.BytesIO(camera_frame(1))).save(png, format="PNG")
    assert np.array_equal(decode_image(png.getvalue(), FULL), decode_image(png.getvalue(), DRAFT))


def test_draft_refuses_every_poison_input_for_the_same_reason() -> None:
    spec = InputSpec(isize=32, channels=1, jpeg_draft=True)
    for name, data, reason in poison_corpus():
        with pytest.raises(BadImage) as e:
            decode_image(data, spec, DecodeLimits(channel_policy="strict", max_bytes=1_000_000))
        assert e.value.reason == reason, name


def test_a_spec_without_draft_writes_the_manifest_it_always_wrote(tmp_path) -> None:
    old_keys = {"isize", "channels", "value_range", "resize"}
    assert set(InputSpec().to_dict()) == old_keys
    assert InputSpec.from_dict(InputSpec().to_dict()).jpeg_draft is False
    assert InputSpec.from_dict(DRAFT.to_dict()) == DRAFT and DRAFT.to_dict()["jpeg_draft"] is True
    g = Generator(GanomalyConfig(isize=32, nc=1, nz=8, ngf=8))
    cal = calibrate(np.linspace(0, 1, 50))
    plain = save_artifact(tmp_path / "plain", g, InputSpec(), cal)
    drafted = save_artifact(tmp_path / "draft", g, InputSpec(jpeg_draft=True), cal)
    assert set(read_manifest(tmp_path / "plain")["input"]) == old_keys  # so its version id is computed over what it was
    assert load_artifact(tmp_path / "plain").input_spec.jpeg_draft is False
    assert load_artifact(tmp_path / "draft").input_spec.jpeg_draft is True
    assert plain["version"] != drafted["version"]  # another decode is another behaviour


def test_training_from_a_folder_of_frames_decodes_exactly_as_serving(tmp_path) -> None:
    frames = {f"f{i:02d}.jpg": camera_frame(100 + i) for i in range(6)}
    for name, data in frames.items():
        (tmp_path / name).write_bytes(data)
    imgs, bad = load_folder(tmp_path, DRAFT)
    assert bad == [] and len(imgs) == 6
    for x, path in zip(imgs.x, imgs.ids, strict=True):
        served = decode_many_pixels([frames[path.rsplit("/", 1)[1]]], DRAFT, DecodeLimits())[0]  # the worker's decode
        assert isinstance(served, np.ndarray) and torch.equal(x, torch.from_numpy(pixels_to_input(served, DRAFT.value_range)))


def test_conversions_are_noted_and_strict_refuses_them() -> None:
    colour = camera_frame(3, size=(64, 48))
    gray = InputSpec(isize=32, channels=1)
    [conv] = decode_many_pixels([colour], gray, DecodeLimits())
    assert isinstance(conv, Converted) and (conv.from_channels, conv.to_channels) == (3, 1) and conv.x.shape == (1, 32, 32)
    assert np.array_equal(pixels_to_input(conv.x, gray.value_range), decode_image(colour, gray))
    [same] = decode_many_pixels([colour], InputSpec(isize=32, channels=3), DecodeLimits())
    assert isinstance(same, np.ndarray)
    [refused] = decode_many_pixels([colour], gray, DecodeLimits(channel_policy="strict"))
    assert isinstance(refused, tuple) and refused[0] == "channels"


def test_conversions_are_counted_always_and_logged_once_per_source_in_bounded_memory(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.configure(processors=[structlog.processors.JSONRenderer()], logger_factory=structlog.PrintLoggerFactory(),
                        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO), cache_logger_on_first_use=False)
    try:
        m = WorkerMetrics()
        conv = ChannelConversions(m.converted, max_sources=2)
        where = {"topic": "images", "partition": 0, "offset": 1}
        for src in ["cam-a", "cam-a", "cam-b", "cam-a", "cam-c", "cam-b", "cam-b"]:
            conv.note(src, 3, 1, **where)
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
    # cam-b was forgotten when cam-c came (cap 2, cam-a more recent), so it is logged again
    assert [(d["event"], d["source"]) for d in lines] == [("channels_converted", s) for s in ("cam-a", "cam-b", "cam-c", "cam-b")]
    assert lines[0]["from_channels"] == 3 and lines[0]["to_channels"] == 1
    text = generate_latest(m.registry).decode()
    assert 'ganomaly_images_converted_total{from_channels="3",to_channels="1"} 7.0' in text


def test_the_worker_converts_by_default_and_help_says_what_each_policy_does(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert WorkerSettings(model=tmp_path).channel_policy == "convert"
    assert main(["worker", "--help"]) == 0
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    assert "convert(default)converts" in help_text and "strictdead-lettersit" in help_text
