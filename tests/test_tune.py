"""`dmlbench tune`: settings chosen on validation classes with one budget per method."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dmlbench.cli import main

from .test_public_datasets import FAKES, UNCHECKED_COUNTS_ENV
from .test_splits import records  # noqa: F401 - the same toy records helper


def grid(tmp_path: Path, dataset: str, methods: str, trials: int = 3, extra: str = "") -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(
        f"output: {tmp_path / 'test-runs'}\n"
        "base: {backbone: vit_glyph_patch8_48, weights: none, batch_size: 4, images_per_class: 2,"
        f" val_fraction: 0.34{extra}}}\n"
        f"methods:\n{methods}"
        f"datasets: ['{dataset}']\n"
        "seeds: [0, 1]\n"
        f"tune: {{trials: {trials}, epochs: 1, output: {tmp_path / 'tune'},"
        " heartbeat_seconds: 1}\n"
    )
    return path


def studies(tune_dir: Path) -> dict[str, list[str]]:
    import optuna

    storage = f"sqlite:///{tune_dir / 'studies.db'}"
    return {
        s.study_name: [t.state.name for t in optuna.load_study(study_name=s.study_name,
                                                                 storage=storage).trials]
        for s in optuna.get_all_study_summaries(storage)
    }  # fmt: skip


def test_tune_chooses_on_validation_and_writes_a_test_sweep(glyph_folder, tmp_path):
    methods = "  - {label: Linear probe, method: linear-probe}\n  - {label: LoRA, method: lora}\n"
    path = grid(tmp_path, f"folder:{glyph_folder}", methods)
    part = CliRunner().invoke(main, ["tune", str(path), "--only", "Linear probe"])
    assert part.exit_code == 0, part.output  # one row of the grid: its study and sweep only
    chosen = yaml.safe_load((tmp_path / "tune" / "chosen.yaml").read_text())
    assert [m["label"] for m in chosen["methods"]] == ["Linear probe"]
    assert [len(v) for v in studies(tmp_path / "tune").values()] == [3]
    # the whole grid, two rows in two processes at once (each row's trials sequential);
    # the row tuned already keeps its study: nothing of it runs again
    first = CliRunner().invoke(main, ["tune", str(path), "--jobs", "2"])
    assert first.exit_code == 0, first.output
    chosen = yaml.safe_load((tmp_path / "tune" / "chosen.yaml").read_text())
    assert [m["label"] for m in chosen["methods"]] == ["Linear probe", "LoRA"]
    assert chosen["seeds"] == [0, 1] and chosen["output"] == str(tmp_path / "test-runs")
    for row in chosen["methods"]:
        assert row["selected_by"].startswith("validation, 3 trials of 1 epochs: lr ")
        assert f"images_per_class {row['images_per_class']}" in row["selected_by"]
        assert "lr" in row and row["images_per_class"] in (1, 2, 4)
    assert "rank" in chosen["methods"][1]["method_options"]  # LoRA's own knob was searched
    # same budget: 3 finished trials per method; every trial scored validation classes
    assert [len(v) for v in studies(tmp_path / "tune").values()] == [3, 3]
    for summary in (tmp_path / "tune" / "trials").glob("*/summary.json"):
        data = json.loads(summary.read_text())
        assert data["split"] == "val" and data["status"] in ("finished", "pruned")
    plots = sorted(p.name for p in (tmp_path / "tune" / "plots").glob("*.png"))
    assert any(p.endswith("-history.png") for p in plots)
    before = (tmp_path / "tune" / "chosen.yaml").stat().st_mtime_ns
    again = CliRunner().invoke(main, ["tune", str(path)])  # finished: changes nothing
    assert again.exit_code == 0 and "unchanged" in again.output
    assert (tmp_path / "tune" / "chosen.yaml").stat().st_mtime_ns == before
    assert [len(v) for v in studies(tmp_path / "tune").values()] == [3, 3]
    refused = CliRunner().invoke(main, ["sweep", str(path)])  # the untuned grid, on test
    assert refused.exit_code == 2 and "--untuned" in refused.output
    assert f"dmlbench tune {path}" in refused.output and not (tmp_path / "test-runs").exists()
    runs = CliRunner().invoke(main, ["sweep", str(tmp_path / "tune" / "chosen.yaml")])
    assert runs.exit_code == 0, runs.output  # the chosen settings on the test split, 2 seeds
    from dmlbench.store.report import render

    report = render(tmp_path / "test-runs")
    assert report.count("selected on validation, 3 trials of 1 epochs") == 2


def test_tune_never_reads_a_test_image(glyph_folder, tmp_path):
    """The test images are unreadable; tuning (validation only) does not notice."""
    import csv

    rows = []
    for i, cls in enumerate(sorted(p.name for p in glyph_folder.iterdir() if p.is_dir())):
        for img in sorted((glyph_folder / cls).iterdir()):
            if i < 6:
                rows.append((str(img), cls, "train"))
            else:
                broken = tmp_path / "broken" / cls / img.name
                broken.parent.mkdir(parents=True, exist_ok=True)
                broken.write_bytes(b"not an image")
                rows.append((str(broken), cls, "test"))
    listing = tmp_path / "list.csv"
    with open(listing, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])
    path = grid(tmp_path, f"folder:{listing}", "  - {method: linear-probe}\n", trials=2)
    result = CliRunner().invoke(main, ["tune", str(path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", sorted(FAKES))
def test_tune_on_each_public_benchmark(name, tmp_path, monkeypatch):
    FAKES[name](tmp_path / "data")
    monkeypatch.setenv("DMLBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv(UNCHECKED_COUNTS_ENV, "1")
    path = grid(tmp_path, name, "  - {method: linear-probe}\n", trials=2)
    result = CliRunner().invoke(main, ["tune", str(path)])
    assert result.exit_code == 0, result.output
    assert "chosen.yaml: written" in result.output


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory) -> Path:
    """16 classes: 5 training classes after the validation carve, so every searched
    images_per_class fits the batch of 4 and no trial is invalid (on the 8-class folder
    a row whose every draw was images_per_class 1 had no trial to choose from)."""
    from .conftest import make_glyph_folder

    return make_glyph_folder(tmp_path_factory.mktemp("wide_folder"), n_classes=16)


@pytest.mark.parametrize("journal", [False, True], ids=["sqlite", "journal"])
def test_a_killed_tune_resumes_where_it_stopped(wide_folder, tmp_path, journal):
    """SIGKILL mid-trial, then the same command: on a journal storage the dead process's
    lease is taken over at once (same host, its pid gone) and its trial closed."""
    path = grid(tmp_path, f"folder:{wide_folder}", "  - {method: linear-probe}\n", trials=3)
    command = [sys.executable, "-m", "dmlbench", "tune", str(path)]
    (tmp_path / "tune").mkdir()
    storage = tmp_path / "tune" / "studies.journal"
    if journal:
        command += ["--storage", f"journal:{storage}"]
    killed = subprocess.run(command, env={**os.environ, "DMLBENCH_KILL_AT": "step:4"},
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    (states,) = (journal_studies(storage) if journal else studies(tmp_path / "tune")).values()
    assert "RUNNING" in states and states.count("COMPLETE") + states.count("PRUNED") < 3
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "its process died; closed as failed" in resumed.stdout
    (states,) = (journal_studies(storage) if journal else studies(tmp_path / "tune")).values()
    assert states.count("COMPLETE") + states.count("PRUNED") == 3
    assert (tmp_path / "tune" / "chosen.yaml").exists()


def journal_studies(path: Path) -> dict[str, list[str]]:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return {s.study_name: [t.state.name for t in optuna.load_study(study_name=s.study_name,
                                                                    storage=storage).trials]
            for s in optuna.get_all_study_summaries(storage)}  # fmt: skip


def test_a_restarted_tune_runs_the_settings_an_uninterrupted_one_would(wide_folder, tmp_path):
    """Every row's budget is the seed's first draws, each run once, however often the
    tune stopped: Optuna's sampler restarts its random sequence in a new process, which
    once gave a row the first draw twice and never its last."""
    import optuna

    from dmlbench.registry import get_method
    from dmlbench.run.tune import startup_draws

    method = "  - {method: linear-probe}\n"
    for trials in (1, 3):  # one trial, then the same tune continued in a new process
        path = grid(tmp_path, f"folder:{wide_folder}", method, trials=trials)
        done = CliRunner().invoke(main, ["tune", str(path)])
        assert done.exit_code == 0, done.output
    storage = f"sqlite:///{tmp_path / 'tune' / 'studies.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    draws = startup_draws(get_method("linear-probe").search_space(), 0, 3)
    assert [t.params for t in trials] == draws and len({str(d) for d in draws}) == 3
    assert [t.user_attrs["slot"] for t in trials] == [0, 1, 2]
    script = Path(__file__).parents[1] / "benchmarks" / "tuning_table.py"
    table = subprocess.run([sys.executable, str(script), str(tmp_path / "tune"), "--trials", "3"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert table.returncode == 0, table.stderr[-2000:]
    (line,) = [x for x in table.stdout.splitlines() if x.startswith("| linear-probe |")]
    best = max(t.value for t in trials)
    assert line.startswith("| linear-probe | 3 / 0 | ") and f"| {100 * best:.1f} | 0 / 0 |" in line
    # the protocol's time, estimated from a timing tune (here: the same tune's trials)
    sys.path.insert(0, str(script.parent))
    try:
        import protocol_time
    finally:
        sys.path.remove(str(script.parent))
    assert protocol_time.budget_epochs(tmp_path / "tune", 3, 0) == {"linear-probe": [1, 1, 1]}
    assert protocol_time.schedule([5.0, 3.0, 3.0, 1.0], 2) == 6.0  # 5+1 | 3+3
    timing = protocol_time.timing_by_row(tmp_path / "tune")["linear-probe"]
    dirs = sorted((tmp_path / "tune" / "trials").iterdir())
    assert timing.train_epoch == pytest.approx(
        sum(protocol_time.row_timing(d).train_epoch for d in dirs) / 3
    )
    estimate = subprocess.run(
        [sys.executable, str(script.parent / "protocol_time.py"), str(tmp_path / "tune"),
         str(tmp_path / "tune"), "--jobs", "1", "--trials", "3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert estimate.returncode == 0, estimate.stderr[-2000:]
    (row,) = [x for x in estimate.stdout.splitlines() if x.startswith("| linear-probe |")]
    tune_minutes = 3 * (timing.fixed + timing.train_epoch + timing.eval_pass) / 60
    assert row.split(" | ")[3:5] == ["3 (3)", f"{tune_minutes:.1f}"]


def test_a_tuning_process_that_dies_is_one_line_and_the_same_command_finishes(
    wide_folder, tmp_path
):
    methods = "  - {label: A, method: linear-probe}\n  - {label: B, method: bitfit}\n"
    path = grid(tmp_path, f"folder:{wide_folder}", methods, trials=2)
    command = [sys.executable, "-m", "dmlbench", "tune", str(path), "--jobs", "2"]
    killed = subprocess.run(command, env={**os.environ, "DMLBENCH_KILL_AT": "step:2"},
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert killed.returncode == 2, killed.stderr[-2000:]  # the workers died, not the command
    (error,) = [line for line in killed.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: dmlbench tune: a tuning process died; run the same command")
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    states = studies(tmp_path / "tune").values()
    # the same budget per row: the killed trials are made up for, no more
    assert [s.count("COMPLETE") + s.count("PRUNED") for s in states] == [2, 2]


@pytest.mark.parametrize("change,message", [
    ({"val_fraction": 0.95}, "leaves"),
    ({"search": {"nothing": [1, 2]}}, "search space key 'nothing'"),
    ({"search": {"lr": [0.1, 0.01]}}, "is empty"),
])  # fmt: skip
def test_bad_tuning_input_is_one_line_and_writes_nothing(glyph_folder, tmp_path, monkeypatch,
                                                         change, message):  # fmt: skip
    from dmlbench.methods.linear_probe import LinearProbe

    from dmlbench.method import LogUniform

    if "search" in change:
        key, (low, high) = next(iter(change["search"].items()))
        monkeypatch.setattr(LinearProbe, "search_space",
                            classmethod(lambda cls: {key: LogUniform(low, high)}))  # fmt: skip
    extra = f", val_fraction: {change['val_fraction']}" if "val_fraction" in change else ""
    path = grid(tmp_path, f"folder:{glyph_folder}", "  - {method: linear-probe}\n", extra=extra)
    if extra:  # the grid's own val_fraction 0.34 comes first in base; this one overrides
        path.write_text(path.read_text().replace("val_fraction: 0.34, ", ""))
    result = CliRunner().invoke(main, ["tune", str(path)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()[-1:]
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "tune").exists()


def test_a_tune_killed_in_its_tpe_phase_draws_what_an_uninterrupted_one_draws(
    wide_folder, tmp_path
):
    """Killed mid-trial past the random start (2 startup trials here, so slot 2 is TPE's)
    and restarted at once: the trial the dead process left RUNNING is closed as failed
    before anything is drawn, so every slot's settings equal an uninterrupted tune's."""
    import optuna

    def tune_grid(where: Path) -> list:
        where.mkdir()
        path = grid(where, f"folder:{wide_folder}", "  - {method: linear-probe}\n", trials=4)
        text = path.read_text().replace("heartbeat_seconds: 1", "heartbeat_seconds: 600")
        path.write_text(text.replace("epochs: 1,", "epochs: 1, startup_trials: 2,"))
        return [sys.executable, "-m", "dmlbench", "tune", str(path)]

    def budget(where: Path) -> list[dict]:
        storage = f"sqlite:///{where / 'tune' / 'studies.db'}"
        (summary,) = optuna.get_all_study_summaries(storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        return [(t.user_attrs["slot"], t.params) for t in done]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(tune_grid(tmp_path / "a"), capture_output=True, text=True,
                              timeout=600, env=env)  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-2000:]
    command = tune_grid(tmp_path / "b")
    killed = subprocess.run(command, env={**env, "DMLBENCH_KILL_AT": "trial-epoch:3"},
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    (states,) = studies(tmp_path / "b" / "tune").values()
    assert states == ["COMPLETE", "COMPLETE", "RUNNING"]
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "trial 2: its process died; closed as failed" in resumed.stdout
    (states,) = studies(tmp_path / "b" / "tune").values()
    assert states[2] == "FAIL" and len(states) == 5
    assert budget(tmp_path / "b") == budget(tmp_path / "a")
    assert [slot for slot, _ in budget(tmp_path / "a")] == [0, 1, 2, 3]
    trial_dirs = (tmp_path / "b" / "tune" / "trials").glob("*/summary.json")
    statuses = [json.loads(p.read_text())["status"] for p in trial_dirs]
    assert statuses.count("abandoned") == 1 and statuses.count("running") == 0


def test_knobs_add_the_methods_own_space_and_fix_holds_a_key_at_the_grids_value(
    wide_folder, tmp_path
):
    """The study's arms: `knobs: true` searches VPT's prompt count and depth on top of
    the shared space; `fix: [images_per_class]` keeps the grid's 2 images per class."""
    import optuna

    path = grid(tmp_path, f"folder:{wide_folder}", "  - {label: VPT, method: vpt}\n", trials=2)
    text = path.read_text().replace(
        "epochs: 1,", "epochs: 1, knobs: true, fix: [images_per_class],"
    )
    path.write_text(text)
    done = CliRunner().invoke(main, ["tune", str(path)])
    assert done.exit_code == 0, done.output
    storage = f"sqlite:///{tmp_path / 'tune' / 'studies.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.study_name.endswith("+knobs+fixed:images_per_class")
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert all(sorted(t.params) == ["lr", "opt.layers", "opt.prompts"] for t in trials)
    (row,) = yaml.safe_load((tmp_path / "tune" / "chosen.yaml").read_text())["methods"]
    assert row["images_per_class"] == 2 and {"layers", "prompts"} <= set(row["method_options"])
    bad = path.read_text().replace("fix: [images_per_class]", "fix: [nope]")
    path.write_text(bad)
    refused = CliRunner().invoke(main, ["tune", str(path)])
    assert refused.exit_code == 2 and "fix 'nope' is not searched for vpt" in refused.output


def _budget_by_study(storage) -> dict[str, list]:
    import optuna

    by_study = {}
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        by_study[summary.study_name.split("#")[0]] = [
            (t.state.name, t.user_attrs.get("slot"), t.params, t.value) for t in trials
        ]
    return by_study


def test_two_processes_on_one_journal_storage_run_each_slot_once_and_choose_as_one(
    wide_folder, tmp_path
):
    """Two `dmlbench tune` processes on one grid and one journal file (the storage for a
    shared filesystem): each row is tuned by one process at a time, every slot of every
    row runs exactly once, and the studies and chosen.yaml equal one process's."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    methods = "  - {label: A, method: linear-probe}\n  - {label: B, method: bitfit}\n"
    path = grid(tmp_path, f"folder:{wide_folder}", methods, trials=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "dmlbench", "tune", str(path)]
    alone = subprocess.run([*base, "--output", str(tmp_path / "alone")], env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-2000:]
    journal = tmp_path / "shared" / "studies.journal"
    journal.parent.mkdir()
    shared = [*base, "--output", str(tmp_path / "shared"), "--storage", f"journal:{journal}"]
    workers = [subprocess.Popen(shared, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]  # fmt: skip
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
    trial_lines = [line.strip() for out, _ in outputs for line in out.splitlines()
                   if line.strip().startswith("trial ")]  # fmt: skip
    assert len(trial_lines) == 2 * 2  # 2 rows × 2 slots, each run by one of the processes
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    together = _budget_by_study(storage)
    one = _budget_by_study(f"sqlite:///{tmp_path / 'alone' / 'studies.db'}")
    assert sorted(together) == sorted(one) == ["A@folder:" + str(wide_folder),
                                               "B@folder:" + str(wide_folder)]  # fmt: skip
    for name, trials in together.items():
        assert [(state, slot, params) for state, slot, params, _ in trials] == [
            (state, slot, params) for state, slot, params, _ in one[name]
        ]
        assert [slot for _, slot, _, _ in trials] == [0, 1]
        assert [v for *_, v in trials] == pytest.approx([v for *_, v in one[name]], abs=1e-6)
    chosen = (tmp_path / "shared" / "chosen.yaml").read_text()
    assert chosen == (tmp_path / "alone" / "chosen.yaml").read_text()
    assert not list((tmp_path / "shared" / ".claims").iterdir())  # every lease given back


@pytest.mark.parametrize("url,message", [
    ("journal:/nonexistent-dmlbench/x.journal", "folder /nonexistent-dmlbench does not exist"),
    ("nosuchdb://somewhere/db", "--storage nosuchdb://somewhere/db: "),
    ("postgresql://u:secret@127.0.0.1:1/db", "--storage postgresql://u:***@127.0.0.1:1/db: "),
])  # fmt: skip
def test_a_bad_storage_is_one_line(glyph_folder, tmp_path, url, message):
    path = grid(tmp_path, f"folder:{glyph_folder}", "  - {method: linear-probe}\n")
    result = CliRunner().invoke(main, ["tune", str(path), "--storage", url])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert "secret" not in result.output  # a database password never shows
    assert not (tmp_path / "tune").exists()


def test_workers_refuse_a_password_in_the_storage_url(glyph_folder, tmp_path):
    """submitit keeps each task's arguments on disk: a password there would be stored."""
    path = grid(tmp_path, f"folder:{glyph_folder}", "  - {method: linear-probe}\n")
    url = "postgresql://u:secret@db.example/x"
    result = CliRunner().invoke(main, ["tune", str(path), "--executor", "submitit-local",
                                       "--storage", url])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "~/.pgpass" in result.output and "secret" not in result.output
    assert not (tmp_path / "tune" / ".submitit").exists()
