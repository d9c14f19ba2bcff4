import json
import mmap
import time

import numpy as np
import pytest

from dmlbench.store.results import RunWriter, load, new_run_dir
from dmlbench.train.meter import PeakMemory, current_rss_bytes


def write_run(root, recall, method="m"):
    writer = RunWriter(new_run_dir(root, method))
    writer.write_config(f"method: {method}\nepochs: 2\n")
    writer.append_epoch({"epoch": 1, "loss": 0.5})
    writer.append_epoch({"epoch": 2, "loss": 0.4, "recall@1": recall})
    writer.write_summary(
        {"status": "finished", "metrics": {"recall@1": recall}, "params": {"tunable": 7}}
    )
    return writer.run_dir


def test_load_gives_one_flat_row_per_run(tmp_path):
    a = write_run(tmp_path, 0.5, "a")
    write_run(tmp_path, 0.75, "b")
    df = load(tmp_path)
    assert len(df) == 2
    assert sorted(df["metrics.recall@1"]) == [0.5, 0.75]
    assert set(df["config.method"]) == {"a", "b"}
    assert (df["params.tunable"] == 7).all()
    assert [json.loads(x)["epoch"] for x in (a / "epochs.jsonl").read_text().splitlines()] == [1, 2]
    assert len(load(a)) == 1  # one run directory works too


def test_corrupt_run_is_skipped_and_left_alone(tmp_path):
    good = write_run(tmp_path, 0.5)
    bad = write_run(tmp_path, 0.6)
    (bad / "summary.json").write_text('{"status": "fini')
    df = load(tmp_path)
    assert list(df["run_dir"]) == [str(good)]
    assert (bad / "summary.json").read_text() == '{"status": "fini'


def test_run_dirs_are_never_reused(tmp_path):
    dirs = {new_run_dir(tmp_path, "x") for _ in range(5)}
    assert len(dirs) == 5


def test_empty_store_is_an_empty_frame(tmp_path):
    assert load(tmp_path).empty


def test_peak_memory_sees_a_transient_allocation():
    """The peak is recorded by the sampling thread alone; the block is freed
    before the context exits, so only a sample taken while it lived can show it.
    The test waits (bounded) for that sample instead of sleeping a fixed time,
    which a loaded 2-core CI machine can overrun. The block is an anonymous mapping:
    a malloc of 200 MiB can reuse pages the process already holds (a full suite's run
    measured 0.004 MiB of growth; with malloc's mmap and trim thresholds raised, 0),
    and then no sampler could see it."""
    with PeakMemory("cpu", interval_s=0.001) as mem:
        region = mmap.mmap(-1, 200 * 2**20)
        block = np.frombuffer(region, dtype=np.uint8)
        block.fill(1)  # every page touched, so resident
        deadline = time.monotonic() + 30
        while mem.rss_peak - mem.rss_start < 150 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.01)
        del block
        region.close()
    result = mem.result()
    assert result["peak_rss_growth_mb"] == pytest.approx(200, rel=0.25)
    assert current_rss_bytes() - mem.rss_start < 50 * 2**20  # freed: the peak was transient
    assert result["cuda_max_allocated_mb"] is None
