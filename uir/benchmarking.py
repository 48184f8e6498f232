"""``uir bench``: per-stage time, images/s and peak memory of a restoration pipeline.

Stages: process start to here (Python and library imports), pipeline load, the router alone,
and a full call with the mixture at K=1 (one expert), K=2 (router top-2) and K=all (every
expert, equal weights). Each call stage is timed ``repeats`` times after one warm-up; the
median is reported. Peak memory is the process's peak resident set on CPU, and the peak
allocated CUDA memory of the stage on a GPU.
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Callable

import torch


def _process_seconds() -> float:
    """Wall time since this process started (covers interpreter start and imports)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def _peak_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(fn, device: str, repeats: int) -> tuple[float, float]:
    """``(median seconds, peak MiB)`` of ``repeats`` calls of ``fn`` after one warm-up call, on
    ``device`` (CUDA synchronised around each call; peak memory as :func:`_peak_mib`)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), _peak_mib(device)


def benchmark_pipeline(load: Callable[[], object], size: int = 512, device: str = "cpu", batch: int = 1,
                       repeats: int = 3) -> list[dict]:
    """Rows ``{stage, seconds, images_per_s, peak_mib}``; see the module docstring. ``load()``
    builds the pipeline on ``device`` (``uir bench`` loads it as ``uir restore`` does)."""
    rows = [{"stage": "start + imports", "seconds": _process_seconds(), "images_per_s": "-",
             "peak_mib": _peak_mib(device)}]
    start = time.perf_counter()
    pipe = load()
    rows.append({"stage": "load pipeline", "seconds": time.perf_counter() - start, "images_per_s": "-",
                 "peak_mib": _peak_mib(device)})
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    names = pipe.expert_list.names
    stages = []
    if pipe.router is not None:
        stages.append(("router only", lambda: pipe.router(x)))
    if names:
        stages.append(("restore, K=1", lambda: pipe(x, weights={names[0]: 1.0}, output_type="pt")))
        if pipe.router is not None and len(names) > 1:
            stages.append(("restore, K=2 (router)", lambda: pipe(x, top_k=2, output_type="pt")))
        stages.append((f"restore, K={len(names)} (all)", lambda: pipe(x, strategy="average", output_type="pt")))
    with torch.no_grad():
        for name, fn in stages:
            seconds, peak = timed(fn, device, repeats)
            rows.append({"stage": name, "seconds": seconds, "images_per_s": batch / seconds, "peak_mib": peak})
    return rows


__all__ = ["benchmark_pipeline", "timed"]
