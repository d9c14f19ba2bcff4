"""dmlbench sweep: the grid, resuming, N at a time, failures that do not stop the rest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.errors import UserError
from dmlbench.run.sweep import read_sweep


def grid_file(tmp_path, folder, methods: str) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(
        f"output: {tmp_path / 'runs'}\n"
        "base: {backbone: vit_glyph_patch8_48, weights: none, epochs: 1, batch_size: 8,"
        " images_per_class: 2}\n"
        f"methods:\n{methods}"
        f"datasets: ['folder:{folder}']\n"
        "seeds: [0, 1]\n"
    )
    return str(path)


METHODS = "  - {label: Linear probe, method: linear-probe}\n  - {label: 'VPT (L1, N2)', method: vpt, method_options: {layers: 1, prompts: 2}}\n"  # noqa: E501


def test_grid_is_the_product_and_keys_are_stable(glyph_folder, tmp_path):
    planned = read_sweep(tmp_path.joinpath(grid_file(tmp_path, glyph_folder, METHODS)))
    assert [(r.config.label, r.config.seed) for r in planned] == [
        ("Linear probe", 0), ("Linear probe", 1), ("VPT (L1, N2)", 0), ("VPT (L1, N2)", 1)
    ]  # fmt: skip
    assert planned[2].config.method_options == {"layers": 1, "prompts": 2}
    assert len({r.key for r in planned}) == 4
    again = read_sweep(tmp_path.joinpath(grid_file(tmp_path, glyph_folder, METHODS)))
    assert [r.key for r in again] == [r.key for r in planned]


def test_sweep_runs_resumes_and_survives_a_failure(glyph_folder, tmp_path):
    bad = "  - {label: Broken, method: vpt, method_options: {layers: 99}}\n"
    grid = grid_file(tmp_path, glyph_folder, METHODS + bad)
    runner = CliRunner()
    first = runner.invoke(main, ["sweep", grid, "--jobs", "2"])
    assert first.exit_code == 1, first.output
    lines = first.output.strip().splitlines()
    assert sum("finished in" in line for line in lines) == 4
    failed = [line for line in lines if "FAILED" in line]
    assert len(failed) == 2 and "layers=99 exceeds the backbone depth 6" in failed[0]
    assert failed[0].endswith("/run.log")
    assert lines[-1].endswith("4 finished now, 0 already, 2 failed")
    # Every run has its own log; a run that failed before its first summary gets
    # one from the sweep (failed, with the error), so it is not taken for interrupted.
    statuses = {}
    for path in (tmp_path / "runs").glob("*/summary.json"):
        summary = json.loads(path.read_text())
        statuses.setdefault(summary["status"], []).append(path)
        assert (path.parent / "run.log").stat().st_size > 0
    assert len(statuses["finished"]) == 4 and len(statuses["failed"]) == 2
    error = json.loads(statuses["failed"][0].read_text())["error"]
    assert "layers=99 exceeds the backbone depth 6" in error
    # A run killed after its last checkpoint: its summary still says "running";
    # the sweep resumes it in place (no second run of the same combination).
    runs = sorted(statuses["finished"])
    summary = json.loads(runs[0].read_text())
    runs[0].write_text(json.dumps({**summary, "status": "running"}))
    dry = runner.invoke(main, ["sweep", grid, "--dry-run"])
    states = [line.rsplit(": ", 1)[1] for line in dry.output.splitlines() if "]: " in line]
    assert states.count("to resume") == 1 and states.count("to run") == 2
    second = runner.invoke(main, ["sweep", grid])
    assert f"resuming {runs[0].parent.name}" in second.output
    assert "1 finished now, 3 already, 2 failed" in second.output
    assert len(list((tmp_path / "runs").glob("*/summary.json"))) == 8  # 2 more failed
    resumed = json.loads(runs[0].read_text())
    assert resumed["status"] == "finished" and resumed["metrics"] == summary["metrics"]
    log = (runs[0].parent / "run.log").read_text()
    assert log.count("dmlbench sweep: started") == 1 and log.count("dmlbench sweep: resumed") == 1


def test_only_and_skip_pick_rows_of_a_grid_by_label(glyph_folder, tmp_path):
    grid = grid_file(tmp_path, glyph_folder, METHODS)
    runner = CliRunner()

    def planned(*args: str) -> list[str]:
        result = runner.invoke(main, ["sweep", grid, "--dry-run", *args])
        assert result.exit_code == 0, result.output
        return [line.split("] ", 1)[1].split(" seed ")[0] for line in result.output.splitlines()]

    assert planned("--only", "VPT (L1, N2)") == ["VPT (L1, N2)"] * 2
    assert planned("--skip", "VPT (L1, N2)") == ["Linear probe"] * 2
    assert planned() == ["Linear probe"] * 2 + ["VPT (L1, N2)"] * 2
    for command in (["sweep", grid, "--only", "VPT"], ["tune", grid, "--skip", "VPT"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [
            f"error: {grid}: no row labelled 'VPT'; its rows: 'Linear probe', 'VPT (L1, N2)'"
        ]
    emptied = runner.invoke(main, ["sweep", grid, "--skip", "Linear probe",
                                   "--skip", "VPT (L1, N2)"])  # fmt: skip
    assert emptied.exit_code == 2 and "leave no row to run" in emptied.output
    assert not (tmp_path / "runs").exists()


def test_unknown_grid_key_is_one_line(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("method: [vpt]\n")
    with pytest.raises(UserError, match="unknown key 'method'; valid keys: backbones, base"):
        read_sweep(path)


@pytest.mark.parametrize("name,runs", [
    ("table1-glyphs", 42), ("table1-glyphs-reference", 6), ("table1-glyphs-v1", 45),
    ("regime-glyphs", 6), ("fidelity-glyphs", 9), ("table1-cub", 33), ("table2", 24),
    ("vptsp-study-paper", 21), ("vptsp-study-budget", 18), ("vptsp-study-knobs", 9),
    ("vptsp-study-layout", 15), ("vptsp-study-mechanism", 18), ("vptsp-study-bridge", 18),
    ("table1-glyphs-zoo", 30),
])  # fmt: skip
def test_every_shipped_sweep_builds(name, runs):
    """Each planned run's method fits its backbone (built on the meta device, no weights)."""
    from pathlib import Path

    import torch

    from dmlbench.data.spec import get_dataset
    from dmlbench.nn.model import build_model
    from dmlbench.registry import get_method

    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.yaml"
    planned = read_sweep(path)
    assert len(planned) == runs
    seen = set()
    for run in planned:
        c = run.config
        if (c.method, str(c.method_options), c.backbone, c.dataset) in seen:
            continue
        seen.add((c.method, str(c.method_options), c.backbone, c.dataset))
        classes = get_dataset(c.dataset).num_train_classes
        with torch.device("meta"):  # shapes only: SOP's class prompts alone are ~1 GB
            model = build_model(c.backbone, None, c.embedding_dim, classes)
            get_method(c.method).from_values(c.method_options).setup(model)


def test_committed_reference_result_matches_its_grid():
    """results/table1-glyphs-v1/ is regenerated from benchmarks/table1-glyphs-v1.yaml:
    every row of the grid, with all its seeds and nothing else, so an edited grid
    without a new report fails here."""
    from collections import Counter
    from pathlib import Path

    import pandas as pd

    root = Path(__file__).parents[1]
    planned = read_sweep(root / "benchmarks" / "table1-glyphs-v1.yaml")
    expected = Counter(run.config.label for run in planned)
    table = pd.read_csv(root / "results" / "table1-glyphs-v1" / "report.csv")
    assert dict(zip(table["row"], table["n"], strict=True)) == dict(expected)
    markdown = (root / "results" / "table1-glyphs-v1" / "report.md").read_text()
    for row, r1 in zip(table["row"], table["metrics.recall@1:mean"], strict=True):
        line = next(x for x in markdown.splitlines() if x.startswith(f"| {row} |"))
        assert f"| {100 * r1:.1f} ± " in line


def test_committed_tuned_table_matches_its_tune_and_grids():
    """results/table1-glyphs/ holds the rows of benchmarks/table1-glyphs.yaml with the
    settings its tune chose (the committed chosen.yaml), each run on the same seeds,
    beside the reference grid's rows (all seeds) and the two no-training rows."""
    from collections import Counter
    from pathlib import Path

    import pandas as pd

    from dmlbench.run.sweep import has_tune_block

    root = Path(__file__).parents[1]
    folder = root / "results" / "table1-glyphs"
    grid = root / "benchmarks" / "table1-glyphs.yaml"
    chosen = read_sweep(folder / "chosen.yaml")
    assert has_tune_block(grid) and not has_tune_block(folder / "chosen.yaml")
    tuned = list(dict.fromkeys(run.config.label for run in read_sweep(grid)))
    assert list(dict.fromkeys(run.config.label for run in chosen)) == tuned  # same rows, order
    assert all(run.config.selected_by.startswith("validation, 6 trials of 4 epochs")
               for run in chosen)  # fmt: skip
    reference = Counter(run.config.label for run in read_sweep(
        root / "benchmarks" / "table1-glyphs-reference.yaml"))  # fmt: skip
    table = pd.read_csv(folder / "report.csv")
    n = dict(zip(table["row"], table["n"], strict=True))
    others = {"Raw-pixel kNN (no model)": 1, "Backbone features, zero-shot (no head)": 1}
    assert set(n) == set(tuned) | set(reference) | set(others)
    seeds = Counter(run.config.label for run in chosen)  # the seeds chosen.yaml plans
    assert all(n[row] == seeds[row] == 3 for row in tuned)  # every tuned row, every seed
    assert all(n[row] == k for row, k in {**reference, **others}.items())
    markdown = (folder / "report.md").read_text()
    for row, r1 in zip(table["row"], table["metrics.recall@1:mean"], strict=True):
        line = next(x for x in markdown.splitlines() if x.startswith(f"| {row} |"))
        assert f"| {100 * r1:.1f}" in line


def one_run_grid(tmp_path, glyph_folder) -> str:
    path = Path(grid_file(tmp_path, glyph_folder, "  - {method: linear-probe}\n"))
    path.write_text(path.read_text().replace("seeds: [0, 1]", "seeds: [0]"))
    return str(path)


def sweep_in_thread(args: list[str], timeout_s: float):
    """Invoke ``dmlbench sweep`` with a deadline: a hung sweep fails the test, not CI."""
    import threading

    result = {}
    thread = threading.Thread(
        target=lambda: result.update(out=CliRunner().invoke(main, args)), daemon=True
    )
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"dmlbench sweep did not finish within {timeout_s} s"
    return result["out"]


def test_a_run_writing_megabytes_to_stderr_finishes(glyph_folder, tmp_path, monkeypatch):
    """The run's output goes to its run.log, not a pipe: a run that writes far more
    than a pipe holds (64 KiB) cannot block. PYTHONVERBOSE=1 makes the run's Python
    log every import on stderr (several MB), whatever dmlbench prints itself."""
    monkeypatch.setenv("PYTHONVERBOSE", "1")
    out = sweep_in_thread(["sweep", one_run_grid(tmp_path, glyph_folder)], timeout_s=300)
    assert out.exit_code == 0, out.output
    assert "1 finished now" in out.output
    (log,) = (tmp_path / "runs").glob("*/run.log")
    assert log.stat().st_size > 2 * 2**20
    assert "\r" not in log.read_text()  # progress as whole lines, no bar redraws


def test_a_stalled_run_is_stopped_and_stays_resumable(glyph_folder, tmp_path, monkeypatch):
    import sys

    import dmlbench.run.sweep

    grid = one_run_grid(tmp_path, glyph_folder)
    stuck = [sys.executable, "-c", "import time; print('stuck', flush=True); time.sleep(600)"]
    monkeypatch.setattr(dmlbench.run.sweep, "run_command", lambda run_dir: stuck)
    out = sweep_in_thread(["sweep", grid, "--stall-timeout", "1"], timeout_s=60)
    assert out.exit_code == 1, out.output
    assert "STALLED (no progress for 1 s; stopped, resumable)" in out.output
    assert out.output.strip().endswith("0 finished now, 0 already, 0 failed, 1 stalled")
    dry = CliRunner().invoke(main, ["sweep", grid, "--dry-run"])
    assert dry.output.strip().endswith(": to resume")


def test_a_slow_run_that_makes_progress_is_not_stalled(glyph_folder, tmp_path, monkeypatch):
    """Progress is the heartbeat a running step or evaluation batch touches, not output."""
    import sys

    import dmlbench.run.sweep

    slow = (
        "import time\n"
        "from dmlbench.progress import heartbeat\n"
        "for _ in range(40):\n"
        "    heartbeat(); time.sleep(0.1)\n"
        "print('slow work done', flush=True)\n"
    )
    command = lambda run_dir: [sys.executable, "-c", slow]  # noqa: E731
    monkeypatch.setattr(dmlbench.run.sweep, "run_command", command)
    grid = one_run_grid(tmp_path, glyph_folder)
    out = sweep_in_thread(["sweep", grid, "--stall-timeout", "1.5"], timeout_s=60)
    assert "STALLED" not in out.output
    # It exited 0 without finishing a run (it is no run): a failure naming its last line.
    assert "FAILED (slow work done)" in out.output


def test_the_table1_sweep_runs_every_declared_table_row():
    """Table-1 rows are declared beside their methods; the shipped CUB grid runs each
    (label and options), so a new row must reach the grid."""
    from dmlbench.registry import table_row_methods

    path = Path(__file__).parents[1] / "benchmarks" / "table1-cub.yaml"
    grid = {(r.config.label, r.config.method): r.config for r in read_sweep(path)}
    for name, row in table_row_methods():
        if row.paper is None:  # a plugin's own row, not one of the paper's
            continue
        config = grid[(row.label, name)]
        assert row.options.items() <= config.method_options.items(), row.label


@pytest.mark.parametrize(("jobs", "cores", "expected"), [(1, 2, "2"), (2, 2, "1"), (3, 2, "1"),
                                                         (2, 16, "8"), (4, 16, "4")])  # fmt: skip
def test_parallel_runs_share_the_cores_instead_of_oversubscribing(jobs, cores, expected):
    from dmlbench.run.sweep import thread_env

    assert thread_env(jobs, {"PATH": "/bin"}, cores) == {
        "PATH": "/bin",
        "OMP_NUM_THREADS": expected,
    }
    # a thread count the user chose is theirs
    assert thread_env(jobs, {"OMP_NUM_THREADS": "3"}, cores) == {"OMP_NUM_THREADS": "3"}


def test_two_sweeps_started_at_once_train_every_run_exactly_once(glyph_folder, tmp_path):
    """Each run of the grid is claimed by one sweep (an OS lock, gone with its process):
    the other leaves it, so no run is trained twice nor in two directories."""
    import subprocess
    import sys

    grid = grid_file(tmp_path, glyph_folder, "  - {label: Linear probe, method: linear-probe}\n")
    command = [sys.executable, "-m", "dmlbench", "sweep", grid]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweeps = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env) for _ in range(2)]  # fmt: skip
    outputs = [s.communicate(timeout=600)[0] for s in sweeps]
    assert [s.returncode for s in sweeps] == [0, 0], outputs
    finished_now = [int(out.strip().splitlines()[-1].split(": ")[1].split()[0]) for out in outputs]
    assert sum(finished_now) == 2, outputs  # 2 seeds, each trained once
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/summary.json")]
    assert len(summaries) == 2 and all(s["status"] == "finished" for s in summaries)
    assert all(s["resumed"] == 0 for s in summaries)  # nobody continued another's run
    keys = [r.key for r in read_sweep(Path(grid))]
    from dmlbench.run.sweep import finished_keys

    assert sorted(finished_keys(tmp_path / "runs")) == sorted(keys)


def test_a_run_dir_trained_by_a_live_process_is_refused_to_a_second(tiny_run_args, tmp_path):
    from dmlbench.run.lock import RUN_LOCK, try_lock

    done = CliRunner().invoke(main, [*tiny_run_args, "--epochs", "0"])
    assert done.exit_code == 0, done.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "running"}))

    def files() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != RUN_LOCK}

    before = files()
    held = try_lock(run_dir / RUN_LOCK)  # this test process is "the trainer"
    try:
        refused = CliRunner().invoke(main, ["run", "--resume", str(run_dir)])
    finally:
        held.release()
    assert refused.exit_code == 2
    assert f"pid {os.getpid()} is training this run now" in refused.output
    assert files() == before
