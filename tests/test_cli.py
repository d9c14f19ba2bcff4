import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmlbench.cli import main
from dmlbench.store.results import load
from tests.conftest import tiny_run_cli_args


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def test_methods_lists_names_with_descriptions():
    out = invoke(["methods"]).output
    assert "full-ft" in out and "linear-probe" in out and "frozen backbone" in out


def test_datasets_lists_glyphs_and_folder():
    out = invoke(["datasets"]).output
    assert "glyphs" in out and "train 100 classes / 4,000 images" in out and "folder:PATH" in out
    assert "cub" in out and "test 100 classes / 5,924 images" in out


def test_tiny_run_end_to_end(tiny_run_args, tmp_path):
    result = invoke([*tiny_run_args, "--method", "full-ft", "--eval-every", "1"])
    assert result.exit_code == 0, result.output
    for needle in ("R@1", "R@8", "MAP@R", "R-precision", "tunable parameters", "peak memory"):
        assert needle in result.output
    df = load(tmp_path / "runs")
    assert len(df) == 1
    row = df.iloc[0]
    assert row["status"] == "finished" and row["method"] == "full-ft"
    assert row["params.tunable"] == row["params.total"]
    assert 0.0 <= row["metrics.recall@1"] <= row["metrics.recall@8"] <= 1.0
    assert row["metrics.queries"] == 4 * 6  # 4 test classes × 6 images
    run_dir = Path(row["run_dir"])
    epochs = [json.loads(line) for line in (run_dir / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1] and "map@r" in epochs[0]
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["device"] == "cpu" and env["torch"]
    assert "method: full-ft" in (run_dir / "config.yaml").read_text()


def test_csv_dataset_gives_the_same_run_as_the_folder(glyph_csv, tiny_run_args, tmp_path):
    folder = invoke(tiny_run_args)
    args = list(tiny_run_args)
    args[args.index("--dataset") + 1] = f"folder:{glyph_csv}"
    csv = invoke(args)
    df = load(tmp_path / "runs").sort_values("config.dataset")
    assert folder.exit_code == 0 and csv.exit_code == 0
    assert df["metrics.map@r"].iloc[0] == pytest.approx(df["metrics.map@r"].iloc[1], abs=1e-6)


@pytest.fixture(scope="module")
def earlier_run(glyph_folder, tmp_path_factory):
    """One finished run whose files every bad-input case must leave untouched."""
    store = tmp_path_factory.mktemp("earlier") / "runs"
    args = tiny_run_cli_args(glyph_folder, store)
    assert invoke(args).exit_code == 0
    return args, store


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "nope"], "unknown method 'nope'; valid methods:"),
        (
            ["--dataset", "nope"],
            "unknown dataset 'nope'; valid datasets: cars, cub, glyphs, glyphs-v1, inshop, sop",
        ),
        (["--backbone", "not_a_vit"], "unknown backbone 'not_a_vit'"),
        (["--weights", "missing.safetensors"], "--weights missing.safetensors: no such file"),
        (["--batch-size", "9"], "batch_size 9 is not divisible by images_per_class 2"),
        (["--epochs", "zero"], "Invalid value for '--epochs': 'zero' is not a valid integer"),
        (["--epochs", "-1"], "epochs must be ≥ 0 (0 = evaluate without training), got -1"),
        (["--opt", "x=1"], "method linear-probe: unknown option 'x'"),
        (["--config", "missing.yaml"], "missing.yaml: cannot read"),
        (["--dataset", "folder:/no/such/dir"], "folder:/no/such/dir: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(earlier_run, extra, message):
    args, store = earlier_run
    before = snapshot(store)
    assert before, "the earlier run left no files to protect"
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert snapshot(store) == before


def test_unreadable_yaml_is_named(tmp_path, tiny_run_args):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    result = CliRunner().invoke(main, [*tiny_run_args, "--config", str(bad)])
    assert result.exit_code == 2 and "bad.yaml: line" in result.output


def test_yaml_and_flag_override(tmp_path, tiny_run_args):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method: full-ft\nseed: 3\nepochs: 5\n")
    result = invoke([*tiny_run_args, "--config", str(cfg)])  # tiny args say --epochs 1
    assert result.exit_code == 0, result.output
    row = load(tmp_path / "runs").iloc[0]
    assert row["config.method"] == "full-ft" and row["config.seed"] == 3
    assert row["config.epochs"] == 1


def test_zero_epochs_evaluates_the_untrained_head(tiny_run_args, tmp_path):
    args = list(tiny_run_args)
    args[args.index("--epochs") + 1] = "0"
    result = invoke(args)
    assert result.exit_code == 0, result.output
    row = load(tmp_path / "runs").iloc[0]
    assert row["time.epochs"] == 0 and 0 <= row["metrics.recall@1"] <= 1


def test_same_seed_same_result(tiny_run_args, tmp_path):
    invoke(tiny_run_args)
    invoke(tiny_run_args)
    df = load(tmp_path / "runs")
    assert df["metrics.map@r"].iloc[0] == df["metrics.map@r"].iloc[1]


def test_non_finite_loss_is_one_line_and_marks_the_run_failed(tiny_run_args, monkeypatch, tmp_path):
    import torch

    import dmlbench.run.execute

    class NanLoss(torch.nn.Module):
        def __init__(self, *args):
            super().__init__()

        def forward(self, embeddings, labels, proxies):
            return (embeddings.sum() + proxies.sum()) * float("nan")

    monkeypatch.setattr(dmlbench.run.execute, "ProxyAnchorLoss", NanLoss)
    result = invoke(tiny_run_args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "loss is nan at step 0 (epoch 1)" in lines[0]
    from dmlbench.store.results import load

    row = load(tmp_path / "runs").iloc[0]
    assert row["status"] == "failed" and "NonFiniteLoss" in row["error"]


def test_non_finite_loss_later_keeps_the_last_good_checkpoint(tiny_run_args, monkeypatch, tmp_path):
    import torch

    import dmlbench.run.execute
    from dmlbench.nn.losses import ProxyAnchorLoss
    from dmlbench.state_file import load_state
    from dmlbench.train.checkpoint import list_checkpoints

    class NanFromStep4(ProxyAnchorLoss):
        calls = 0

        def forward(self, embeddings, labels, proxies):
            NanFromStep4.calls += 1
            loss = super().forward(embeddings, labels, proxies)
            return loss * float("nan") if NanFromStep4.calls > 4 else loss

    monkeypatch.setattr(dmlbench.run.execute, "ProxyAnchorLoss", NanFromStep4)
    args = tiny_run_args + ["--epochs", "3", "--checkpoint-every", "1", "--keep-checkpoints", "9"]
    result = invoke(args)
    assert result.exit_code == 1 and "loss is nan at step 4 (epoch 2)" in result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    # Steps 1-4 were good (step 3 ends epoch 1): their checkpoints stay, nothing after.
    names = [p.name for p in list_checkpoints(run_dir)]
    assert names == [f"step-{s:09d}.safetensors" for s in (1, 2, 3, 4)]
    last = load_state(list_checkpoints(run_dir)[-1])
    assert all(torch.isfinite(v).all() for v in last["trainer"]["model"].values())


def test_an_output_folder_that_cannot_be_made_is_one_line_before_any_work(tiny_run_args, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    args = [*tiny_run_args, "--output", str(tmp_path / "a-file" / "runs")]
    result = invoke(args)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: output {tmp_path / 'a-file' / 'runs'}: {tmp_path / 'a-file'} is not a folder; "
        "give another --output"
    )
    assert (tmp_path / "a-file").read_text() == "not a folder"
