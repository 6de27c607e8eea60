"""Replaying a stretch of a topic: selection by offsets or time, read without a consumer group."""
