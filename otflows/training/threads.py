r"""How many CPU threads a fit runs on: one where a step's work is too small to share.

torch splits an operation across its threads (by default one per core) whatever the
operation's size. A fit's steps are many small operations, where the threads spend more time
meeting than computing, and where other processes hold the cores, a thread that waits for a
descheduled one stalls the rest. On a 2-core machine (the docs' scale-out page) a second
thread gained at most 1.14× for the default flows and maps up to d = 128 when the machine was
idle, and cost 2–3× when each core was busy with another process; only steps of about
:data:`WORK_PER_THREAD` multiply-adds or more gained from it (1.3× and up). So a fit runs on
one thread below that work and on torch's threads above it, unless it is told otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["WORK_PER_THREAD", "chosen_threads", "fit_threads", "set_fit_threads", "threads_for"]

# a step's multiply-adds (parameters × rows of the batch) from which a second thread gains
WORK_PER_THREAD = 2e7
_chosen: int | None = None  # every fit's threads where its own are not given (None: by work)


def set_fit_threads(threads: int | None) -> None:
    r"""Every fit's CPU threads from now on where the fit is not given its own (``None``: by
    its work, :func:`threads_for`), and torch's: what ``--threads`` does on the command line
    and in the benchmarks, so that their fits run on the threads they report.

    Example:
        >>> before = torch.get_num_threads()
        >>> set_fit_threads(2)
        >>> threads_for(10.0), torch.get_num_threads()
        (2, 2)
        >>> set_fit_threads(None); torch.set_num_threads(before)
        >>> threads_for(10.0)
        1
    """
    global _chosen
    if threads is not None:
        torch.set_num_threads(_checked(threads))
    _chosen = threads


def chosen_threads() -> int | None:
    r"""The threads :func:`set_fit_threads` set (``None``: each fit's follow its work)."""
    return _chosen


def _checked(threads: int) -> int:
    r"""``threads``, a positive integer, else a :class:`ValueError` naming it."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None; got {threads!r}")
    return threads


def threads_for(work: float, threads: int | None = None) -> int:
    r"""The CPU threads for a fit whose step does ``work`` multiply-adds: ``threads`` where
    given, else those of :func:`set_fit_threads` where set, else one below
    :data:`WORK_PER_THREAD` and torch's threads (``torch.get_num_threads()``, which
    ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` set) from there on.

    Example:
        >>> threads_for(774 * 256)  # a 2-D map's step
        1
        >>> threads_for(1e9) == torch.get_num_threads(), threads_for(1e9, threads=3)
        (True, 3)
    """
    if threads is not None:
        return _checked(threads)
    if _chosen is not None:
        return _chosen
    return 1 if work < WORK_PER_THREAD else torch.get_num_threads()


@contextlib.contextmanager
def fit_threads(work: float, threads: int | None, device: torch.device) -> Iterator[int]:
    r"""Within it, torch runs on :func:`threads_for` ``(work, threads)`` CPU threads (on a
    CPU ``device``; elsewhere, as it was); afterwards, on as many as before. torch's thread
    count belongs to the process: a fit in another Python thread at the same time shares it.

    Example:
        >>> before = torch.get_num_threads()
        >>> with fit_threads(1e3, None, torch.device("cpu")) as n:
        ...     n, torch.get_num_threads()
        (1, 1)
        >>> torch.get_num_threads() == before
        True
    """
    n = threads_for(work, threads)
    if torch.device(device).type != "cpu":
        yield torch.get_num_threads()
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
