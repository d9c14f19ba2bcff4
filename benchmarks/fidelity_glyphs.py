"""docs/fidelity.md's before/after table: per-epoch R@1 and MAP@R, and O's share of Q.

    python benchmarks/fidelity_glyphs.py results/runs/fidelity-glyphs-before \\
        results/runs/fidelity-glyphs-after

Each folder holds the runs of benchmarks/fidelity-glyphs.yaml (one made with
the code before the fidelity fixes). Rows are grouped by label; numbers are
mean ± std over seeds, in percent. O's share at the end is read from the run's
summary, or, for runs made before it was recorded, from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml


def o_share_from_checkpoint(run_dir: Path, alpha: float) -> float | None:
    from dmlbench.train.checkpoint import load_latest

    payload = load_latest(run_dir, move_bad=False)
    if payload is None:
        return None
    state = payload["trainer"]["model"] if "trainer" in payload else payload["model"]
    if "semantic.memory" not in state:
        return None
    o = alpha * state["proxies"].float().norm(dim=1)
    p = (1 - alpha) * state["semantic.memory"].float().norm(dim=1)
    return float((o / (o + p)).mean())


def collect(folder: Path) -> dict[str, dict]:
    rows: dict[str, dict] = defaultdict(lambda: {"epochs": defaultdict(list), "share": []})
    for summary_path in sorted(folder.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "finished":
            continue
        run_dir = summary_path.parent
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        row = rows[config.get("label") or config["method"]]
        for line in (run_dir / "epochs.jsonl").read_text().splitlines():
            record = json.loads(line)
            if "recall@1" in record:
                row["epochs"][record["epoch"]].append((record["recall@1"], record["map@r"]))
        state = summary.get("method_state")
        if state:
            row["share"].append((state["start"].get("o_share"), state["end"].get("o_share")))
        elif config["method"].startswith("vptsp"):
            alpha = (config.get("method_options") or {}).get("alpha", 0.5)
            row["share"].append((None, o_share_from_checkpoint(run_dir, alpha)))
    return rows


def fmt(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{100 * np.mean(values):.1f} ± {100 * spread:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    args = parser.parse_args()
    for folder in args.folders:
        rows = collect(folder)
        print(f"\n{folder}\n")
        epochs = sorted({e for row in rows.values() for e in row["epochs"]})
        header = ["row", "n"] + [f"R@1 / MAP@R after epoch {e}" for e in epochs]
        header += ["O's share at start", "at end"]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for label, row in rows.items():
            n = len(row["epochs"][epochs[-1]]) if epochs else 0
            cells = [label, str(n)]
            for e in epochs:
                pairs = row["epochs"].get(e, [])
                cells.append(f"{fmt([p[0] for p in pairs])} / {fmt([p[1] for p in pairs])}")
            cells.append(fmt([s[0] for s in row["share"]]))
            cells.append(fmt([s[1] for s in row["share"]]))
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
