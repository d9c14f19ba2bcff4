"""Progress output: bars on a terminal, whole lines in logs, heartbeats for stall detection."""

from __future__ import annotations

import io

import dmlbench.progress as progress_module
from dmlbench.progress import LOG_LINE, progress


def test_in_a_log_progress_is_whole_lines_at_most_every_interval(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress_module.sys, "stderr", stream)
    monkeypatch.setenv("DMLBENCH_PROGRESS_SECONDS", "0")
    bar = progress(range(5), desc="epoch 1", unit="batch")
    for step in bar:
        bar.set_postfix(loss=f"{step:.1f}")  # the trainer sets it every step: no extra line
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert [line.split(" [")[0] for line in lines] == [f"epoch 1: {n}/5 batch" for n in range(1, 6)]
    assert all(LOG_LINE.search(line) for line in lines)

    stream.truncate(0)
    monkeypatch.setenv("DMLBENCH_PROGRESS_SECONDS", "3600")
    with progress(total=1000, desc="rendering", unit="img") as bar:
        for _ in range(1000):
            bar.update(1)
    assert stream.getvalue().strip("\x00") == ""  # well within the interval: no line at all


def test_progress_lines_are_told_from_messages():
    assert LOG_LINE.search("checking images: 12/300 img [00:01<00:20, 11.5img/s]")
    assert LOG_LINE.search("epoch 3: 1.2k/2.4k batch [01:00<01:00, 20.0batch/s, loss=0.5]")
    assert not LOG_LINE.search("error: method vpt: layers=99 exceeds the backbone depth 6")
    assert not LOG_LINE.search("epoch 1: loss 10.2, 300 img/s | R@1 0.6 MAP@R 0.2 RP 0.3")


def test_heartbeat_touches_the_file_a_sweep_names(monkeypatch, tmp_path):
    beat = tmp_path / "beat"
    monkeypatch.setenv("DMLBENCH_HEARTBEAT", str(beat))
    monkeypatch.setattr(progress_module, "_last_beat", 0.0)
    for _ in progress(range(3), desc="x"):
        pass
    assert beat.exists()
