"""The streaming worker: Kafka -> decode -> micro-batch -> GANomaly -> Kafka + Redis, at-least-once.

Threads and queues (each arrow a queue; only the poll thread touches the consumer):

    poll thread --raw--> decoders (N) --ready--> scorer --out--> sink thread
         ^                    |                                   |
         |                    +------ dead letters --------------->|
         +--------------- OffsetTracker.done() <------------------+

The poll thread commits, per partition, only offsets below the lowest record whose
outputs are not yet acknowledged, and pauses partitions when too much is in flight.
"""
