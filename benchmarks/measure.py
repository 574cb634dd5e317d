"""Timing and memory measurement that survives a noisy, shared machine.

* :func:`interleaved_times` runs several callables in rounds, alternating their order
  (A B C, C B A, A B C, ...), so slow drift of the machine (other jobs, thermal state) hits
  all of them alike; each round times a block of ``inner`` calls and records the mean.
* :func:`summarize` gives the median and interquartile range of those per-call times.
* :func:`paired_ratio` divides two callables' times *round by round* before taking the
  median: a burst of load that slows one round slows both sides of that round's ratio.
* :func:`peak_memory` measures the peak of memory allocated while a callable runs, above what
  was allocated before it: ``torch.cuda.max_memory_allocated`` on CUDA, the allocation trace
  of ``torch.profiler`` on CPU (``tracemalloc`` cannot see torch's allocator).
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Callable, Mapping

import torch

__all__ = ["interleaved_times", "summarize", "paired_ratio", "peak_memory", "synchronize"]


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that a timer measures work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    fns: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    inner: int,
    warmup: int,
    device: torch.device | None = None,
    time_budget: float | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each callable: one number per round.

    Args:
        fns: name -> callable taking no argument.
        rounds: number of rounds; in each, every callable runs ``inner`` times in a row.
        inner: calls per timed block (amortises the timer and the Python loop).
        warmup: untimed calls of each callable first (allocator, caches, lazy init).
        device: synchronised before reading the clock.
        time_budget: stop after the round during which this many seconds have passed (at least
            three rounds are always run).
    """
    device = device or torch.device("cpu")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    try:
        for r in range(rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                fn = fns[name]
                gc.collect()
                gc.disable()
                synchronize(device)
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                synchronize(device)
                times[name].append((time.perf_counter() - t0) / inner)
                if gc_was_enabled:
                    gc.enable()
            if time_budget is not None and r >= 2 and time.perf_counter() - start > time_budget:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def summarize(values: list[float]) -> dict[str, float]:
    """Median, quartiles and count of a list of measurements."""
    if not values:
        return {"median": float("nan"), "q1": float("nan"), "q3": float("nan"), "n": 0}
    if len(values) == 1:
        v = values[0]
        return {"median": v, "q1": v, "q3": v, "n": 1}
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "n": len(values)}


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Median and quartiles of the per-round ratios ``numerator[r] / denominator[r]``."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True) if b > 0]
    return summarize(ratios)


def peak_memory(fn: Callable[[], object], device: torch.device) -> int | None:
    """Peak bytes allocated while ``fn()`` runs, above the allocation before the call.

    Call ``fn`` once beforehand (warm-up), so that lazily created state (optimizer moments)
    is not counted as the step's working memory.  Returns ``None`` if it cannot be measured.
    """
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    try:
        return _cpu_peak_from_profiler(fn)
    except Exception:  # private profiler API changed: report "n/a" rather than fail the run
        return None


def _cpu_peak_from_profiler(fn: Callable[[], object]) -> int:
    """Replay the CPU allocator's events recorded by ``torch.profiler``; return the peak."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                fn()
        finally:
            logging.disable(logging.NOTSET)
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            events.append((event.start_time_ns, event.extra_fields.alloc_size))
        stack.extend(event.children)
    if not events:
        raise RuntimeError("the profiler recorded no allocation")
    events.sort()
    live = peak = 0
    for _, size in events:
        live += size
        peak = max(peak, live)
    return peak
