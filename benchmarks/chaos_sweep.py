"""Crash test of the run store: a sweep whose processes are SIGKILLed at random.

Runs a small sweep on the glyph default, at the recipe's own epochs, twice:
once undisturbed, once while a killer sends SIGKILL to a random `dmlbench run`
worker (and now and then to the sweep process itself) at random moments,
restarting the sweep until every run has finished. Then prints

* runs completed (of the planned grid),
* results lost: a finished run that later vanished or changed (must be 0),
* duplicate rows: a grid cell with more than one finished run (must be 0),
* whether the final table equals the undisturbed sweep's, metric by metric
  (bit-identical resume makes this exact).

    python benchmarks/chaos_sweep.py --kills 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

GRID = """\
output: {output}
base: {{checkpoint_every: 50}}  # the recipe's epochs (8 on the glyphs)
methods:
  - {{label: Linear probe, method: linear-probe}}
  - {{label: "VPT (L6, N10)", method: vpt, method_options: {{layers: 6, prompts: 10}}}}
datasets: [glyphs]
seeds: [0, 1]
"""
METRICS = ["recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision"]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_moment(pid: int) -> str:
    """Where the run of worker ``pid`` stands (its run directory is on its command line,
    ``dmlbench run --resume DIR``: the sweep creates the directory before the process)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        run_dir = Path(argv[argv.index(b"--resume") + 1].decode())
    except (OSError, ValueError, IndexError):
        return "before a checkpoint"
    if not (run_dir / "summary.json").exists():
        return "before its first summary"
    if list((run_dir / "checkpoints").glob("step-*.safetensors")):
        return "after a checkpoint"
    return "before a checkpoint"


def sweep_command(grid: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "dmlbench", "sweep", str(grid), "--jobs", str(jobs)]


def finished_runs(output: Path) -> dict[str, bytes]:
    """run dir → bytes of its summary, for every finished run."""
    done = {}
    for summary in output.glob("*/summary.json"):
        try:
            if json.loads(summary.read_text()).get("status") == "finished":
                done[summary.parent.name] = summary.read_bytes()
        except (OSError, ValueError):
            continue
    return done


def table(output: Path) -> dict[tuple, tuple]:
    """(label, seed) → metrics of its finished run(s); a duplicate cell keeps a list."""
    cells: dict[tuple, list] = {}
    for summary in output.glob("*/summary.json"):
        data = json.loads(summary.read_text())
        if data.get("status") != "finished":
            continue
        config = yaml.safe_load((summary.parent / "config.yaml").read_text())
        cell = (config["label"], data["seed"])
        cells.setdefault(cell, []).append(tuple(data["metrics"][m] for m in METRICS))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-wait", type=float, default=90.0, help="most seconds between kills")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dmlbench-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    calm_grid, chaos_grid = work / "calm.yaml", work / "chaos.yaml"
    calm_grid.write_text(GRID.format(output=work / "calm"))
    chaos_grid.write_text(GRID.format(output=work / "chaos"))
    start = time.time()
    subprocess.run(
        sweep_command(calm_grid, args.jobs), check=True, env=env, stdout=subprocess.DEVNULL
    )
    calm_seconds = time.time() - start
    calm = table(work / "calm")
    print(f"undisturbed sweep: {len(calm)} runs ({calm_seconds:.0f} s this time)")

    kills = {"worker": 0, "sweep": 0}
    moments = {"before its first summary": 0, "before a checkpoint": 0, "after a checkpoint": 0}
    seen: dict[str, bytes] = {}
    lost: set[str] = set()
    restarts = 0
    start = time.time()
    while True:
        sweep = subprocess.Popen(sweep_command(chaos_grid, args.jobs), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        stop = threading.Event()

        def killer(sweep=sweep, stop=stop) -> None:
            while not stop.is_set() and sum(kills.values()) < args.kills:
                # Spread over a run's life (minutes here), not its start-up.
                time.sleep(rng.uniform(3.0, args.max_wait))
                if stop.is_set() or sweep.poll() is not None:
                    return
                workers = children(sweep.pid)
                if rng.random() < 0.15 or not workers:  # now and then the sweep itself
                    sweep.send_signal(signal.SIGKILL)
                    for pid in workers:
                        os.kill(pid, signal.SIGKILL)
                    kills["sweep"] += 1
                    return
                victim = rng.choice(workers)
                moments[kill_moment(victim)] += 1
                os.kill(victim, signal.SIGKILL)
                kills["worker"] += 1

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        sweep.wait()
        stop.set()
        thread.join()
        now = finished_runs(work / "chaos")
        lost |= {run for run, text in seen.items() if now.get(run) != text}
        seen.update(now)
        if len(table(work / "chaos")) == len(calm) and sweep.returncode == 0:
            break
        restarts += 1
    chaos = table(work / "chaos")
    duplicates = sum(len(v) - 1 for v in chaos.values())
    equal = {cell: values[0] for cell, values in chaos.items()} == {
        cell: values[0] for cell, values in calm.items()
    }
    print(f"chaos sweep: {sum(kills.values())} SIGKILLs ({kills['worker']} run workers, "
          f"{kills['sweep']} sweep processes), {restarts} sweep restarts, "
          f"{time.time() - start:.0f} s")  # fmt: skip
    print("worker kills by moment: " + ", ".join(f"{v} {k}" for k, v in moments.items()))
    resumes = sum(
        json.loads(p.read_text()).get("resumed", 0) for p in (work / "chaos").glob("*/summary.json")
    )
    print(f"resumes from a checkpoint: {resumes}")
    print(f"runs completed: {len(chaos)} of {len(calm)}")
    print(f"results lost: {len(lost)}")
    print(f"duplicate rows: {duplicates}")
    print(f"final table equals the undisturbed sweep's: {'yes' if equal else 'NO'}")
    print(f"(run directories under {work})")
    if lost or duplicates or not equal or len(chaos) != len(calm):
        sys.exit(1)


if __name__ == "__main__":
    main()
