"""Publishing images to the input topic: a small library (``ImagePublisher``) and the ``ganomaly produce`` CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producers.publisher import ImagePublisher, PublishStats, encode_png

__all__ = ["ImagePublisher", "PublishStats", "encode_png"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `ganomaly feedback` (in this package) starts without loading Kafka's client for publishing images.
    if name in __all__:
        from producers import publisher

        return getattr(publisher, name)
    msg = f"module 'producers' has no attribute {name!r}"
    raise AttributeError(msg)
