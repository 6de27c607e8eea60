"""Publishing images to the input topic: a small library (``ImagePublisher``) and the ``ganomaly produce`` CLI."""

from producers.publisher import ImagePublisher, PublishStats, encode_png

__all__ = ["ImagePublisher", "PublishStats", "encode_png"]
