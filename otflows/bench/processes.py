"""Benchmark runs in processes of their own: fits in parallel worker processes, and single
runs isolated so that their peak memory and threads are their own."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from otflows.training.threads import chosen_threads, set_fit_threads

__all__ = ["in_parallel", "isolated", "run_isolated"]


def in_parallel(
    task: Callable[..., dict],
    tasks: list[tuple],
    args: Any,
    jobs: int,
    describe: Callable[[dict], str],
) -> list[dict]:
    r"""``task(*t, args)`` for every ``t`` of ``tasks``, ``jobs`` at a time, each in a fresh
    (spawned) worker process; every result is printed (``describe``) as it arrives. Returns
    the results in the order they arrived."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(task, *t, args) for t in tasks]
        results = []
        for future in concurrent.futures.as_completed(futures):
            results.append(future.result())
            print(f"[{len(results)}/{len(tasks)}] {describe(results[-1])}", flush=True)
    return results


def _guarded(function: Callable[..., dict], kwargs: dict) -> dict:
    try:
        return function(**kwargs)
    except Exception as error:  # reported in the table, not fatal to the benchmark
        return {"error": f"{type(error).__name__}: {error}"}


def _child(queue, function, kwargs):
    queue.put(_guarded(function, kwargs))


def isolated(function: Callable[..., dict], fresh: bool = True, **kwargs: Any) -> dict:
    """Runs ``function(**kwargs)`` in a fresh process, so its peak memory is its own, or
    with ``fresh=False`` in this one (a smoke run's: it skips the processes' start-up, and
    its numbers mean nothing anyway). An exception becomes ``{"error": "Type: message"}``."""
    if not fresh:  # as a fresh process starts (float32 by default), leaving this one as it was
        dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
        chosen = chosen_threads()
        torch.set_default_dtype(torch.float32)
        try:
            with torch.random.fork_rng(devices=[]):
                return _guarded(function, kwargs)
        finally:
            torch.set_default_dtype(dtype)
            set_fit_threads(chosen)
            torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, kwargs))
    process.start()
    result = queue.get()
    process.join()
    return result


def run_isolated(
    function: Callable[..., dict], plan: list[dict], desc: str, fresh: bool = True
) -> list[dict]:
    """Runs ``function(**kwargs)`` for each ``kwargs`` of ``plan`` (with a progress bar), each
    in a fresh process unless ``fresh`` is false (:func:`isolated`); each result is merged
    into its ``kwargs``."""
    return [
        {**kwargs, **isolated(function, fresh, **kwargs)}
        for kwargs in tqdm(plan, desc, unit="run")
    ]
