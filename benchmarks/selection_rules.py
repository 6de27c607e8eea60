"""Replay epoch-selection rules over score-study rows (a development tool).

Every row of ``score_study.py`` holds one epoch's validation-only statistics ("val") and its
test AUROCs (diagnostics). For each run (class, seed, range, lr, schedule) in the given files,
this prints the epoch each rule would ship and that epoch's latent test AUROC, so a proposed
rule can be compared with the shipped one (val_recon) on development classes before anyone
looks at the class whose number is reported.

    python benchmarks/selection_rules.py benchmarks/results/score-study-loo-dev-12k5.jsonl benchmarks/results/score-study-seed1-12k5.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from ganomaly.training.fit import TrainConfig

# rule name (as fit.py's --select-by names it) -> the validation statistic it minimises;
# val_loss is fit's w_con * recon + w_enc * latent, with the default weights the study trains with
RULES: dict[str, Callable[[dict], float]] = {
    "val_recon": lambda v: v["recon"],
    "val_latent": lambda v: v["latent"],
    "val_loss": lambda v: TrainConfig.w_con * v["recon"] + TrainConfig.w_enc * v["latent"],
}
BASELINE = "val_recon"


def runs(paths: list[Path]) -> dict[tuple, dict[int, dict]]:
    out: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            key = (path.name, r["protocol"], r["class"], r["seed"], tuple(r["range"]), r.get("lr"), r.get("cosine"))
            out[key][r["epoch"]] = r
    return out


def main(paths: list[Path], n_epochs: int) -> None:
    diffs: dict[str, list[float]] = defaultdict(list)
    for key, epochs in runs(paths).items():
        if sorted(epochs) != list(range(1, n_epochs + 1)):  # unfinished (or longer) runs: their rules would pick among other epochs
            print(f"{key[0]:<40} class {key[2]} seed {key[3]}: skipped, epochs {sorted(epochs)}")
            continue
        picked = {}
        for rule, statistic in RULES.items():
            e = min(epochs, key=lambda ep, f=statistic: (f(epochs[ep]["val"]), -ep))  # ties: the later epoch, as fit does
            picked[rule] = (e, epochs[e]["test_auroc"]["latent"])
        base = picked[BASELINE][1]
        for rule in RULES:
            diffs[rule].append(picked[rule][1] - base)
        cells = "  ".join(f"{rule} e{e} {auc:.3f}" for rule, (e, auc) in picked.items())
        print(f"{key[0]:<40} class {key[2]} seed {key[3]} range {list(key[4])} lr {key[5]} cosine {key[6]}:  {cells}")
    for rule, d in diffs.items():
        if rule == BASELINE or not d:
            continue
        print(f"{rule} vs {BASELINE}: {len(d)} runs, mean difference {statistics.mean(d):+.4f}, "
              f"higher in {sum(x > 0 for x in d)}, lower in {sum(x < 0 for x in d)}, same epoch or AUROC in {sum(x == 0 for x in d)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", type=Path, nargs="+", help="score_study.py output files")
    ap.add_argument("--epochs", type=int, default=5, help="the runs' length; shorter (unfinished) runs are skipped")
    a = ap.parse_args()
    main(a.rows, a.epochs)
