"""What every benchmark script shares: timing, peak memory, threads, options, tables and JSON
(runs in processes of their own: :mod:`otflows.bench.processes`)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from otflows.training.threads import chosen_threads, set_fit_threads


def description(docstring: str) -> str:
    r"""A module docstring's first paragraph as plain text, for ``--help``: reStructuredText
    roles and literals (``:math:`x```, ``:class:`~a.B```, double backquotes) become their text.

    Example:
        >>> description("The :math:`W_2` map of ``x`` (:class:`~otflows.BrenierMap`).\n\nMore.")
        'The W_2 map of x (BrenierMap).'
    """
    text = " ".join(docstring.strip().split("\n\n")[0].split())
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def machine() -> dict[str, Any]:
    """The machine the numbers come from."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "fit_threads": chosen_threads() or "by work (otflows.training.threads)",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def cpu_model() -> str | None:
    """The processor's model name as Linux reports it (``/proc/cpuinfo``), else ``None``: CPU
    seconds from two machines compare only as far as their processors do.

    Example:
        >>> isinstance(cpu_model(), (str, type(None)))
        True
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


def keep_freed_memory() -> bool:
    """Lets glibc's ``malloc`` keep freed memory for reuse instead of returning it to the OS.

    By default every freed block of 32 MiB or more (a ``[1024, 64, 128]`` float32 tensor) is
    unmapped and the top of the heap is trimmed, so each new large temporary faults its pages
    in again: on CPU that doubled the time of the W2 benchmark's Newton linearisations at
    d = 64 (175 → 105 ms per batch of 1024). Raising ``M_MMAP_THRESHOLD`` and
    ``M_TRIM_THRESHOLD`` (what the ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
    environment variables do, or preloading jemalloc/tcmalloc as PyTorch's CPU performance
    guide advises) keeps the memory mapped; peak memory is unchanged. Returns whether the
    process's C library took the settings (``False`` off glibc, e.g. on macOS).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    kept = libc.mallopt(M_MMAP_THRESHOLD, 2**30) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(kept)


def timed(step: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """The median wall time of ``step`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mb(device: str | torch.device = "cpu") -> float:
    """This process's peak resident memory (on the CPU) or peak memory allocated on ``device``
    (a GPU), in MiB."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


RESULTS = Path("otflows-results")  # a benchmark's default output folder, in the working directory


def add_out_option(parser: argparse.ArgumentParser, filename: str, figure: bool = False) -> None:
    r"""``--out PATH``: where a benchmark writes its JSON (and, where it draws one, its figure
    beside it as ``PATH.png``); by default ``otflows-results/filename`` in the working directory,
    never the committed results."""
    beside = ", its figure beside it (.png)" if figure else ""
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / filename,
        help=f"the JSON to write{beside} (default: {RESULTS / filename})",
    )


def save_figure(figure: Figure, out: Path, dpi: int = 100) -> Path:
    r"""Saves ``figure`` beside the JSON ``out`` (as ``out.png``) and closes it; returns the
    path. Every benchmark figure a page shows is written here, by the command that writes its
    JSON (and, in a checkout of the repository, redrawn from that JSON by its report script's
    ``--figures`` where the figure is drawn from the JSON alone)."""
    import matplotlib.pyplot as plt

    path = out.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    r"""``--threads N``: torch's CPU threads in each run; by default torch's own (which
    ``OMP_NUM_THREADS`` sets), never overridden."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's CPU threads per run (default: torch's own, which OMP_NUM_THREADS sets); "
        "timings compare only at equal threads",
    )


def set_threads(threads: int | None) -> None:
    r"""Sets torch's CPU threads and every fit's when ``threads`` is given (see
    :func:`add_threads_option`; :func:`otflows.training.threads.set_fit_threads`)."""
    if threads is not None:
        set_fit_threads(threads)


@contextlib.contextmanager
def busy_cores(processes: int) -> Iterator[None]:
    r"""``processes`` busy Python processes beside the work inside (each a loop that stops
    itself after three hours at most), stopped on the way out: a machine whose cores other
    jobs hold, for the checks that nothing is slowed past use there."""
    loop = "import time\nend = time.time() + 3 * 3600\nwhile time.time() < end:\n    pass\n"
    workers = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(processes)]
    try:
        yield
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()


def add_device_option(parser: argparse.ArgumentParser, more: str = "") -> None:
    r"""``--device``: where the benchmark's fits run (``"cpu"``, ``"cuda"``, ``"cuda:1"``…;
    ``more`` adds to its help); check it with :func:`otflows.validation.as_device` once
    parsed."""
    parser.add_argument(
        "--device", default="cpu", help=f"where the fits run: 'cpu', 'cuda', 'cuda:1'…{more}"
    )


def add_study_options(
    parser: argparse.ArgumentParser, filename: str, baselines: bool = False
) -> None:
    r"""What the studies take: ``--jobs`` fits at a time, ``--threads`` each, ``--out``
    (:func:`add_out_option`) and, for a study with ``baselines``, ``--baselines-only``
    (:func:`previous_fits`)."""
    parser.add_argument("--jobs", type=int, default=2, help="fits at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each fit")
    add_out_option(parser, filename)
    if not baselines:
        return
    parser.add_argument(
        "--baselines-only",
        action="store_true",
        help="rerun the baselines only, keeping the fits of --out's JSON (each keeps the "
        "command, commit and date it came from); give the options of the run that wrote it",
    )


def previous_fits(path: Path) -> list[dict]:
    r"""The fits of the study JSON at ``path``, each with the command, commit and date it came
    from (its own, or else the file's): what a ``--baselines-only`` rerun keeps."""
    old = json.loads(Path(path).read_text())
    origin = {key: old.get(key) for key in ("command", "commit", "date")}
    return [origin | fit for fit in old["fits"]]


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table of ``rows`` with ``(key, header)`` columns; floats get 4 significant
    digits (``mean ± std`` where the row has ``key + "_std"``), missing values a dash, a ``|``
    in a header or cell escaped, and columns empty in every row are left out.

    Example:
        >>> print(markdown_table([{"e": 0.123456}], [("e", "max |y − x|")]))
        | max \\|y − x\\| |
        |---|
        | 0.1235 |
    """
    columns = [(key, header) for key, header in columns if any(key in row for row in rows)]

    def cell(row: dict, key: str) -> str:
        value = row.get(key)
        if value is None:
            return "—"
        if isinstance(value, float):
            std = row.get(f"{key}_std")
            return f"{value:.4g}" + ("" if std is None else f" ± {std:.2g}")
        return str(value)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [line([header for _, header in columns]), "|" + "|".join("---" for _ in columns) + "|"]
    lines += [line([cell(row, key) for key, _ in columns]) for row in rows]
    return "\n".join(lines)


def provenance() -> dict[str, Any]:
    """The command that ran (``otflows ...`` however the CLI was started: its console script or
    ``python -m otflows.cli``), the otflows commit it ran (when in a git checkout) and the
    date."""
    program = Path(sys.argv[0])
    module = program.name == "__main__.py" and program.parent.parts[-2:] == ("otflows", "cli")
    cli = program.name == "otflows" or module
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "command": " ".join(["otflows" if cli else sys.argv[0], *sys.argv[1:]]),
        "commit": commit or None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(
    path: str | Path, payload: dict, smoke: bool = False, figure: Path | None = None
) -> None:
    """Writes the results with the machine, command, commit and date they came from, and says
    so, naming the ``figure`` drawn beside them if any; a ``smoke`` run (``--quick``) is marked
    as such in the JSON and says so on the console."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), **provenance(), **payload}
    if smoke:
        record["smoke_run"] = True
        print(f"\n{SMOKE_NOTE}")
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}" + ("" if figure is None else f" and {figure}"))


SMOKE_NOTE = "(a smoke run, --quick: it checks that the benchmark runs; its numbers mean nothing)"


class Curve:
    """A metric of a model measured at :func:`otflows.fit_flow`'s callbacks, against training
    time only: the metric's own time is not counted. Call :meth:`start` just before training;
    ``points`` holds ``(seconds, step, value)``."""

    def __init__(self, metric: Callable[[torch.nn.Module], float]) -> None:
        self.metric = metric
        self.points: list[tuple[float, int, float]] = []
        self.start()

    def start(self) -> None:
        """Sets the clock to zero."""
        self._start, self._paused = time.perf_counter(), 0.0

    def __call__(self, phase: str, step: int, model: torch.nn.Module) -> None:
        paused_at = time.perf_counter()
        seconds = paused_at - self._start - self._paused
        self.points.append((seconds, step, self.metric(model)))
        self._paused += time.perf_counter() - paused_at


def seconds_to(points: list[tuple[float, int, float]], value: float) -> float | None:
    """The training seconds at which a :class:`Curve`'s metric first was ``<= value`` (None if
    never)."""
    return next((t for t, _, v in points if v <= value), None)


def aggregate(runs: list[dict], keys: Sequence[str]) -> dict[str, float]:
    """The mean of each key over ``runs`` and, with several runs, its std as ``key + "_std"``
    (which :func:`markdown_table` prints as ``mean ± std``)."""
    summary = {}
    for key in keys:
        values = [r[key] for r in runs]
        summary[key] = statistics.mean(values)
        if len(values) > 1:
            summary[f"{key}_std"] = statistics.stdev(values)
    return summary


def report(
    args: Any,
    rows: list[dict],
    columns: list[tuple[str, str]],
    runs: list[dict],
    figure: Figure | None = None,
) -> dict:
    """Prints the markdown table, saves the figure beside ``args.out`` (as .png) and writes the
    JSON: the options, the table's rows and every run. Returns that JSON."""
    print(markdown_table(rows, columns))
    drawn = None if figure is None else save_figure(figure, args.out)
    payload = {"args": vars(args) | {"out": str(args.out)}, "rows": rows, "runs": runs}
    write_json(args.out, payload, smoke=getattr(args, "quick", False), figure=drawn)
    return payload
