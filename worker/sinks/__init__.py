"""Output sinks. Contract: ``write(batch)`` returns only when every output of the batch
is acknowledged (Kafka acks / Redis pipeline executed), retrying through outages; it
raises :class:`worker.retry.Aborted` only when shutdown gives up, in which case
the batch's offsets stay uncommitted and the records are redelivered."""
