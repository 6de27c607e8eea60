"""Render runs/table.jsonl (from fashion_mnist_table.py) as the markdown tables of docs/results.md."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KINDS = ("latent", "recon", "hybrid")


def main(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    seed0 = {(r["protocol"], r["class"]): r for r in rows if r["seed"] == 0}
    protos = [p for p in ("leave-one-out", "one-class") if any(k[0] == p for k in seed0)]
    head = "| class | " + " | ".join(f"{p} {k}" for p in protos for k in KINDS) + " |"
    print(head)
    print("|" + "---|" * (1 + len(protos) * len(KINDS)))
    for c in range(10):
        cells = []
        for p in protos:
            r = seed0.get((p, c))
            cells += [f"{r[k]['auroc']:.3f}" if r else "" for k in KINDS]
        print(f"| {c} {NAMES[c]} | " + " | ".join(cells) + " |")
    means = []
    for p in protos:
        for k in KINDS:
            vals = [seed0[(p, c)][k]["auroc"] for c in range(10) if (p, c) in seed0]
            means.append(f"**{statistics.mean(vals):.3f}**" if vals else "")
    print("| mean | " + " | ".join(means) + " |")
    print()
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["protocol"], r["class"])].append(r)
    multi = {k: v for k, v in groups.items() if len({r["seed"] for r in v}) >= 3}
    if multi:
        print("| protocol, class | seeds | " + " | ".join(f"{k} AUROC mean ± sd (min-max)" for k in KINDS) + " |")
        print("|---|---|" + "---|" * len(KINDS))
        for (p, c), rs in sorted(multi.items()):
            cells = []
            for k in KINDS:
                v = [r[k]["auroc"] for r in rs]
                cells.append(f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f} ({min(v):.3f}-{max(v):.3f})")
            print(f"| {p}, {c} {NAMES[c]} | {','.join(str(r['seed']) for r in sorted(rs, key=lambda r: r['seed']))} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/table.jsonl"))
