"""Measuring a run: parameter counts, peak memory, time.

Memory is *sampled* by a background thread rather than read once, because
the peak happens inside a training step and is gone by the time the step
returns:
- CPU: resident set size from /proc/self/statm (Linux) every few ms; the
  figure reported is the peak growth over the RSS when measuring started,
  i.e. what training added on top of the loaded process. Without /proc,
  ``resource.getrusage`` gives the process-lifetime peak instead.
- CUDA: ``torch.cuda.max_memory_allocated`` (the allocator's own peak, reset
  at start) and NVML's device memory in use (everything on the GPU: context,
  cache, other processes), sampled by the same thread.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from dataclasses import dataclass

import torch
from torch import nn

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@dataclass
class ParameterCount:
    tunable: int
    total: int
    backbone: int

    @property
    def tunable_pct_of_backbone(self) -> float:
        return 100.0 * self.tunable / self.backbone if self.backbone else float("nan")


def count_parameters(model: nn.Module) -> ParameterCount:
    """Counts over the whole model; ``backbone`` is the pretrained feature extractor
    alone (no classifier, no adapter or prompt a method added), the denominator
    of the "% of backbone" column."""
    if hasattr(model, "pretrained_parameters"):
        backbone = sum(p.numel() for p in model.pretrained_parameters().values())
    else:
        backbone = sum(p.numel() for p in getattr(model, "backbone", model).parameters())
    return ParameterCount(
        tunable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total=sum(p.numel() for p in model.parameters()),
        backbone=backbone,
    )


class PeakMemory:
    """Context manager sampling peak memory; read ``result()`` after the block."""

    def __init__(self, device: torch.device, interval_s: float = 0.005):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml_handle = None
        self.rss_start = self.rss_peak = 0
        self.nvml_peak = 0

    def _sample(self) -> None:
        rss = current_rss_bytes()
        self.rss_peak = max(self.rss_peak, rss)
        if self._nvml_handle is not None:
            import pynvml

            used = pynvml.nvmlDeviceGetMemoryInfo(self._nvml_handle).used
            self.nvml_peak = max(self.nvml_peak, used)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._nvml_handle = _nvml_handle(self.device)
        self.rss_start = self.rss_peak = current_rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def result(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {
            "peak_rss_growth_mb": (self.rss_peak - self.rss_start) / 2**20,
            "peak_rss_mb": self.rss_peak / 2**20,
            "cuda_max_allocated_mb": None,
            "nvml_peak_used_mb": None,
        }
        if self.device.type == "cuda":
            out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            if self._nvml_handle is not None:
                out["nvml_peak_used_mb"] = self.nvml_peak / 2**20
        return out


def _nvml_handle(device: torch.device):
    try:
        import pynvml

        pynvml.nvmlInit()
        index = device.index if device.index is not None else torch.cuda.current_device()
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # NVML missing or not matching the device: torch's figure still stands
        return None


def peak_memory_mb(memory: dict[str, float | None]) -> float:
    """The headline figure: allocator peak on CUDA, peak RSS growth on CPU."""
    cuda = memory.get("cuda_max_allocated_mb")
    return cuda if cuda is not None else memory["peak_rss_growth_mb"]


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
