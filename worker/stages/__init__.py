"""The worker's stages, one class per thread (see worker/pipeline.py for how they are joined).

poll.py         the consumer: polling, commits, backpressure (pause/resume), the rebalance listener
decode.py       raw records -> model inputs (threads, or chunks for the decode processes)
score.py        micro-batches -> results (and the shadow model's), failures dead-lettered
sink.py         results and dead letters -> Kafka + Redis, then the records are done
model_watch.py  the registry pointer -> hot model swaps
flow.py         what every stage shares: the decoded item, the stop/abort pair, queue helpers
"""
