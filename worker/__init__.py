"""The streaming worker: Kafka -> decode -> micro-batch -> GANomaly -> Kafka + Redis, at-least-once.

Stages (worker/stages/, one class per thread) joined by queues (worker/pipeline.py); only the
poll stage touches the consumer:

    poll --raw--> decode (N) --ready--> score --out--> sink
      ^              |                                   |
      |              +------ dead letters -------------->|
      +------------- OffsetTracker.done() <--------------+

The poll stage commits, per partition, only offsets below the lowest record whose
outputs are not yet acknowledged, and pauses partitions when too much is in flight.
"""
