"""One trainer run: ingest verdicts, decide whether to refit, refit, gate, record, promote."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from ganomaly.artifact import Artifact
from ganomaly.connections.redis import make_redis
from ganomaly.connections.startup import StartupWait, wait_for_redis
from ganomaly.data.datasets import idx_splits
from ganomaly.data.images import BadImage, DecodeLimits, InputSpec, decode_image
from ganomaly.model import Generator
from ganomaly.registry import ModelStore, RedisPointer, Registry
from ganomaly.training.fit import TrainConfig, fit, score_tensor
from trainer.gate import GateRule, decide, side_metrics
from trainer.ingest import ingest_feedback
from trainer.normal_set import Entry, NormalSet, split_of

log = structlog.get_logger("trainer")


def _decode(ns: NormalSet, entries: list[Entry], spec: InputSpec) -> torch.Tensor:
    xs = []
    for e in entries:
        try:
            xs.append(decode_image(ns.read(e), spec, DecodeLimits(channel_policy="convert")))
        except BadImage as err:
            log.warning("confirmed_image_unreadable", subject=e.subject, reason=err.reason)
    return torch.from_numpy(np.stack(xs)) if xs else torch.empty(0, spec.channels, spec.isize, spec.isize)


def original_data(champion: Artifact, spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The champion's own training and validation data, when it came from an IDX dataset still present."""
    d = champion.manifest.get("data", {})
    src = Path(str(d.get("source", "")))
    if d.get("protocol") not in ("leave-one-out", "one-class") or not src.is_dir():
        return None
    sp = idx_splits(src, d["protocol"], int(d["class"]), spec, max_train_images=d.get("n_train"), max_val_images=d.get("n_val", 5000),
                    seed=int(d.get("seed", 0)), with_test=False)
    return sp.train.x, sp.val.x


def run_once(s: Any, wait: StartupWait | None = None) -> dict[str, Any]:
    """``s`` is a TrainerSettings. Returns the decision record (also written to the store).

    Redis and the broker are waited for within ``wait`` (default: ``s.connect_timeout_s``), which
    raises :class:`ganomaly.connections.startup.ConnectTimeout` past its bound."""
    from ganomaly.device import resolve_device

    wait = wait or StartupWait(s.connect_timeout_s)
    wait_for_redis(wait, s.redis)
    store = ModelStore(s.model_store)
    rclient = make_redis(s.redis, socket_timeout=10)
    registry = Registry(store, RedisPointer(rclient, s.redis.redis_prefix))
    device = resolve_device(s.device)
    t0 = time.monotonic()
    with registry.lock(s.lock_timeout_s):
        ns = NormalSet(s.data_dir)
        ingested = ingest_feedback(s.kafka, s.feedback_topic, s.group_id, ns, idle_ms=s.idle_ms, wait=wait)
        log.info("feedback_ingested", **ingested, normals=len(ns.with_verdict("normal")), anomalies=len(ns.with_verdict("anomaly")))
        ptr = registry.current()
        if ptr is None:
            if s.bootstrap_model is None:
                return {"action": "none", "reason": "no current model in Redis and no --bootstrap-model", "ingested": ingested}
            registry.promote(registry.add(s.bootstrap_model), "trainer-bootstrap", expect=None)
            ptr = registry.current()
            assert ptr is not None
        new = ns.new_normals()
        record: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "champion": ptr.version, "ingested": ingested,
                                  "new_confirmed_normals": new}
        if new < s.min_new_normals:
            record |= {"action": "skip", "reason": f"{new} new confirmed normals < min_new_normals={s.min_new_normals}"}
            log.info("skip", **record)
            return record

        champion = store.load(ptr.version, device)
        spec = champion.input_spec
        normals = ns.with_verdict("normal")
        parts = {k: [e for e in normals if split_of(e.subject) == k] for k in ("train", "calib", "gate")}
        train_x, calib_x = _decode(ns, parts["train"], spec), _decode(ns, parts["calib"], spec)
        gate_n, gate_a = _decode(ns, parts["gate"], spec), _decode(ns, ns.with_verdict("anomaly"), spec)
        if s.include_original:
            orig = original_data(champion, spec)
            if orig is not None:
                train_x, calib_x = torch.cat([train_x, orig[0]]), torch.cat([calib_x, orig[1]])
        cfg = TrainConfig(epochs=s.epochs, batch_size=min(s.batch_size, max(2, len(train_x))), lr=s.lr, target_fpr=s.target_fpr, seed=s.seed,
                          swa_start=s.swa_start, ema_decay=s.ema_decay, score=champion.score_spec.kind)  # the challenger keeps the champion's kind of score
        init = None
        if s.warm_start:
            init = Generator(champion.config)
            init.load_state_dict(champion.generator.state_dict())
        res = fit(champion.config, cfg, train_x, calib_x, device=device, init_generator=init)
        challenger_version = store.save(res.generator, spec, res.calibration, parent_version=champion.version, score_spec=res.score_spec,
                                        training={**cfg.__dict__, "warm_start": s.warm_start, "history": res.history_dicts()},
                                        data={"source": str(s.data_dir), "protocol": "confirmed-normal", "n_train": len(train_x),
                                              "n_val": len(calib_x), "include_original": s.include_original})
        challenger = store.load(challenger_version, device)

        def scores(art: Artifact, x: torch.Tensor) -> np.ndarray:
            return score_tensor(art.scorer(device), x) if len(x) else np.empty(0)

        champ_m = side_metrics(scores(champion, gate_n), scores(champion, gate_a), champion.threshold)
        chall_m = side_metrics(scores(challenger, gate_n), scores(challenger, gate_a), challenger.threshold)
        decision = decide(champ_m, chall_m, GateRule(fpr_tolerance=s.fpr_tolerance, auroc_tolerance=s.auroc_tolerance,
                                                     min_anomalies=s.min_anomalies))
        record |= {"challenger": challenger_version, "decision": decision.to_dict(), "seconds": round(time.monotonic() - t0, 1),
                   "sizes": {"train": len(train_x), "calib": len(calib_x), "gate_normal": len(gate_n), "gate_anomaly": len(gate_a)}}
        if decision.promote:
            ok = registry.promote(challenger_version, "trainer", expect=champion.version)
            record["action"] = "promoted" if ok else "superseded"
            if not ok:
                record["reason"] = "the current model changed during this run; not overwriting it"
        else:
            record["action"] = "rejected"
        ns.mark_trained()
        ns.save()
        store.record_decision(record)
        log.info("decision", action=record["action"], champion=champion.version, challenger=challenger_version, reasons=decision.reasons)
        return record
