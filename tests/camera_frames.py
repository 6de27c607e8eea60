"""Synthetic 640x480 colour JPEG camera frames for the tests (the generator the camera benchmark uses)."""

from ganomaly.data.synthetic import FRAME, camera_frame

__all__ = ["FRAME", "camera_frame"]
