"""The pictures of an alert: the original frame read back by its coordinates, and its anomaly map, on demand.

Maps are recomputed here from the image bytes and the model version that scored the alert (as
``ganomaly explain`` does), not stored by the workers: the workers pay nothing for them, and one
28x28 or 128x128 image costs milliseconds on a CPU. One consumer (no group, nothing committed)
reads records back; bytes, models and rendered PNGs are kept in small bounded caches so that the
thumbnail, overlay and heatmap of one alert cost one fetch and one forward pass.
"""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer
from PIL import Image

from ganomaly.artifact import Artifact, load_artifact
from ganomaly.connections.records import fetch_records
from ganomaly.data.images import BadImage
from ganomaly.data.overlay import png
from ganomaly.errors import ArtifactError
from ganomaly.explain import Explanation, explain
from ganomaly.model import Scorer
from ganomaly.registry import ModelStore

VERSION = re.compile(r"^m-[0-9A-Za-z._-]{1,80}$")  # what a version looks like; nothing else reaches the store's path
THUMB = 160
KINDS = ("original", "overlay", "heatmap")


class Unavailable(Exception):
    """Why an alert's picture cannot be shown (deleted by retention, too large, not an image, model gone)."""


class _Lru(OrderedDict[Any, Any]):
    def __init__(self, max_items: int) -> None:
        super().__init__()
        self.max_items = max_items

    def get_or(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.max_items:
            self.popitem(last=False)
        return value


class ImageService:
    def __init__(self, consumer_factory: Callable[[], KafkaConsumer], store: ModelStore, *, device: str, max_image_bytes: int) -> None:
        self._consumer_factory = consumer_factory
        self._consumer: KafkaConsumer | None = None
        self.store = store
        self.device = device
        self.max_image_bytes = max_image_bytes
        self._fetch_lock = threading.Lock()  # a KafkaConsumer is not thread-safe
        self._model_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._forward_lock = threading.Lock()
        self._bytes = _Lru(64)
        self._models = _Lru(3)
        self._rendered = _Lru(256)

    def close(self) -> None:
        with self._fetch_lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def original(self, ref: dict[str, Any]) -> bytes:
        key = (ref["topic"], int(ref["partition"]), int(ref["offset"]))
        with self._fetch_lock:
            if key in self._bytes:
                return self._bytes.get_or(key, lambda: b"")
            if self._consumer is None:
                self._consumer = self._consumer_factory()
            got = fetch_records(self._consumer, key[0], {key[1]: {key[2]}}, timeout_s=10.0)[(key[1], key[2])]
            if isinstance(got, str):
                msg = f"the image is no longer on the topic ({got})"
                raise Unavailable(msg)
            if len(got) > self.max_image_bytes:
                msg = f"the image is {len(got):,} bytes, above the console's limit of {self.max_image_bytes:,}"
                raise Unavailable(msg)
            return self._bytes.get_or(key, lambda: got)

    def model(self, version: str) -> tuple[Artifact, Scorer]:
        """The artifact and its one Scorer (made once: making one rewrites the weights' layout in place)."""
        if not VERSION.match(version):
            msg = f"not a model version: {version[:40]!r}"
            raise Unavailable(msg)
        with self._model_lock:
            def load() -> tuple[Artifact, Scorer]:
                path: Path = self.store.path_of(version)
                if not path.is_dir():
                    msg = f"model {version} is not in the model store"
                    raise Unavailable(msg)
                try:
                    art = load_artifact(path, self.device)
                except ArtifactError as e:
                    raise Unavailable(str(e)) from None
                return art, art.scorer(self.device)
            return self._models.get_or(version, load)  # type: ignore[no-any-return]

    def explanation(self, ref: dict[str, Any], version: str) -> tuple[Explanation, Artifact]:
        data = self.original(ref)
        art, scorer = self.model(version)
        try:
            # one forward pass at a time: with one intra-op thread each, concurrent passes would only contend for
            # the same two cores, and a model shared between threads is safest used by one at a time
            with self._forward_lock:
                return explain(art, data, device=self.device, scorer=scorer), art
        except BadImage as e:
            msg = f"the record cannot be decoded as the model's input ({e.reason})"
            raise Unavailable(msg) from None

    def raw_map(self, ref: dict[str, Any], version: str) -> bytes:
        """The map itself: float32, isize x isize at the model's resolution (per-pixel |x - G(x)|, smoothed), in NumPy's .npy format."""
        ex, _ = self.explanation(ref, version)
        buf = io.BytesIO()
        np.save(buf, ex.map.astype(np.float32), allow_pickle=False)
        return buf.getvalue()

    def render(self, kind: str, ref: dict[str, Any], version: str, *, thumb: bool) -> bytes:
        """A PNG of the original frame, its overlay or its heatmap (bounded in size; ``thumb``: at most 160 px)."""
        key = (kind, ref["topic"], int(ref["partition"]), int(ref["offset"]), version, thumb)
        with self._render_lock:
            if key in self._rendered:
                return self._rendered.get_or(key, lambda: b"")
        if kind == "original":
            out = self._original_png(self.original(ref))
        else:
            ex, art = self.explanation(ref, version)
            full = ex.overlay_png(art) if kind == "overlay" else ex.heatmap_png(art)
            # both renders of one alert come from one forward pass
            other = "heatmap" if kind == "overlay" else "overlay"
            with self._render_lock:
                self._rendered.get_or((other, *key[1:5], False), lambda: ex.heatmap_png(art) if other == "heatmap" else ex.overlay_png(art))
            out = full
        if thumb:
            out = _shrink(out, THUMB)
        with self._render_lock:
            return self._rendered.get_or(key, lambda: out)

    def _original_png(self, data: bytes) -> bytes:
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (1024, 1024))  # JPEG: decode at a reduced scale, the page never shows more
                frame = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            msg = f"the record is not an image ({type(e).__name__})"
            raise Unavailable(msg) from None
        frame.thumbnail((1024, 1024))
        return png(frame)


def _shrink(data: bytes, side: int) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        if max(im.size) > side:
            im.thumbnail((side, side))
        elif max(im.size) < side // 2:  # a 28x28 frame is unreadable at its own size: enlarge, nearest keeps its pixels
            s = (side // 2) // max(im.size)
            im = im.resize((im.width * s, im.height * s), Image.Resampling.NEAREST)
        return png(im)
