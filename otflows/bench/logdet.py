"""Log-determinants and inverses of Brenier flows at d = 16 … 1024: dense exact, structured exact,
our stochastic estimator and the `cpflows` package's, side by side in one run.

    otflows bench logdet            # full run: d = 16, 64, 256, 1024
    otflows bench logdet --quick    # smoke run: d = 16
    otflows bench logdet --sections inverse --out PATH   # rerun the inverses, keep PATH's steps

Each (method, d) runs in a fresh process (peak memory is its own; --quick runs them in this
one). Prints markdown tables and
writes JSON (default otflows-results/logdet_scaling.json).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from otflows.bench.baselines import CPFLOW_ICNN, CPFlow, standard_normal_log_prob
from otflows.bench.common import (
    add_device_option,
    add_out_option,
    add_threads_option,
    description,
    machine,
    markdown_table,
    peak_memory_mb,
    set_threads,
    timed,
    write_json,
)
from otflows.bench.processes import isolated
from otflows.validation import as_device

# V of rank 64 keeps the M-MGN near the size of CP-Flow's ICNN3 at d = 256 and 1024
MMGN_SIZE = dict(hidden_features=64, num_modules=4, rank=64)
ICNN_SIZE = dict(hidden_features=64, num_layers=3)
SECTIONS = {"train": "train_step", "inverse": "inverse"}  # --sections → the JSON's key


def _ours(method: str, d: int):
    from otflows import BrenierTransform, build_net

    if method == "stochastic":
        return BrenierTransform(build_net("icnn", d, **ICNN_SIZE), gamma=0.01, logdet="stochastic")
    logdet = {"dense": "exact", "structured": "structured"}[method]
    return BrenierTransform(build_net("mmgn", d, **MMGN_SIZE), gamma=0.01, logdet=logdet)


def _nll(model, x: torch.Tensor) -> torch.Tensor:
    if isinstance(model, CPFlow):  # in train mode, the package's CG surrogate
        return -model.log_prob(x).mean()
    y, logdet = model(x)
    return -(standard_normal_log_prob(y) + logdet).mean()


def train_step(
    method: str,
    d: int,
    batch: int,
    repeats: int,
    threads: int | None,
    warm: int,
    device: str = "cpu",
) -> dict:
    """Seconds per training step (forward + backward of the NLL, Adam) and peak memory: at
    initialisation, and averaged over ``repeats`` steps after ``warm`` steps of training on the
    Gaussian coupling of CP-Flow's protocol (Adam lr 0.05, clipping 10), where the stochastic
    estimators' conjugate gradients slow down as the Hessians grow ill-conditioned."""
    from otflows.datasets import GaussianCoupling

    set_threads(threads)
    torch.manual_seed(0)
    model = CPFlow(d, bruteforce=False) if method == "cpflows" else _ours(method, d)
    model.to(device)
    data = torch.as_tensor(
        GaussianCoupling.random(d, seed=0).sample(batch * (warm + repeats + 1)),
        dtype=torch.float32,
        device=device,
    ).split(batch)
    if method == "cpflows":
        model.initialize(data[0])
    model.train()
    # CP-Flow's protocol for CP-Flow; our flows' learning rate (benchmarks/kl_race.py) for ours
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05 if method == "cpflows" else 0.01)

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        _nll(model, x).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()

    at_init = timed(lambda: _nll(model, data[0]).backward(), repeats=1 if warm == 0 else 2)
    result = {"seconds": at_init, "parameters": sum(p.numel() for p in model.parameters())}
    if warm > 0:
        for x in data[1 : warm + 1]:
            step(x)
        start = time.perf_counter()
        for x in data[warm + 1 :]:
            step(x)
        result["seconds_trained"] = (time.perf_counter() - start) / repeats
    result["peak_mb"] = peak_memory_mb(device)
    return result


def logdet_error(
    method: str, d: int, batch: int, threads: int | None, device: str = "cpu"
) -> dict:
    """The relative error of the log-det against the dense exact one on the same model."""
    set_threads(threads)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(1)
    x = torch.randn(batch, d).to(device)
    if method == "cpflows":
        model = CPFlow(d, bruteforce=False).to(device)
        model.initialize(x)
        model.eval()
        block, zero = model.layers[0], x.new_zeros(batch)
        estimate = block.forward_transform_stochastic(x, zero)[1].detach()  # its SLQ in eval
        exact = block.forward_transform_bruteforce(x, zero)[1].detach()
    else:
        model = _ours(method, d).to(device)
        model.eval()
        with torch.no_grad():
            estimate = model(x)[1]
            # eigvalsh, not slogdet: this torch build's MKL LU (slogdet) returned wrong values
            # on these batched 256 × 256 Jacobians with 2 threads ("DLASWP parameter 6")
            exact = torch.linalg.eigvalsh(model.jacobian(x)).log().sum(-1)
    error = ((estimate - exact).abs() / exact.abs()).max()
    return {"logdet_rel_error": float(error)}


def inverse(d: int, batch: int, dtype: str, threads: int | None, device: str = "cpu") -> dict:
    """Newton inverse of the structured M-MGN map: the solve's time, worst relative residual
    and steps; and, with gradients, forward + backward of the inverse (outputs and log-det)
    beside that of the map itself, and their ratio less the solve: about one, as the inverse
    factorises each Jacobian once (at the solution, for its log-det and for the implicit
    gradient's :math:`J^{-1}` in the backward), plus an evaluation of :math:`T` there."""
    set_threads(threads)
    torch.set_default_dtype(getattr(torch, dtype))
    repeats = max(3, 640 // d)  # more where a call takes milliseconds
    model = _ours("structured", d).to(device)
    torch.manual_seed(2)
    x = torch.randn(batch, d).to(device)
    with torch.no_grad():
        y = model.transport(x)
        seconds = timed(lambda: model.solve(y), repeats=repeats)
        result = model.solve(y)
    relative = result.residual / (1 + y.norm(dim=-1))

    def backward(outputs: tuple[torch.Tensor, torch.Tensor]) -> None:
        (outputs[0].square().sum() + outputs[1].sum()).backward()

    forward_grad = timed(lambda: backward(model(x)), repeats=repeats)
    inverse_grad = timed(lambda: backward(model.inverse(y)), repeats=repeats)
    return {
        "seconds": seconds,
        "max_rel_residual": float(relative.max()),
        "max_newton_steps": int(result.iterations.max()),
        "converged": bool(result.converged.all()),
        "forward_grad_seconds": forward_grad,
        "inverse_grad_seconds": inverse_grad,
        "inverse_grad_factorisations": (inverse_grad - seconds) / forward_grad,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the benchmark from command-line arguments; returns what it writes as JSON."""
    parser = argparse.ArgumentParser(prog="otflows bench logdet", description=description(__doc__))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (d = 16, 5 repeats): its numbers mean nothing",
    )
    parser.add_argument("--dims", type=int, nargs="+", default=None)
    parser.add_argument("--batch", type=int, default=64)
    add_threads_option(parser)
    add_device_option(parser)
    parser.add_argument("--dense-max", type=int, default=1024, help="largest d for dense exact")
    parser.add_argument(
        "--warm",
        type=int,
        default=None,
        help="training steps before the 'trained' timing (default 100; 5 quick)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=list(SECTIONS),
        default=list(SECTIONS),
        help="the tables to run; one not run is kept from --out's file, with the command, "
        "commit and date it came from (default: both)",
    )
    add_out_option(parser, "logdet_scaling.json")
    args = parser.parse_args(argv)
    as_device(args.device, "--device")
    dims = args.dims or ([16] if args.quick else [16, 64, 256, 1024])
    kept = {
        SECTIONS[name]: _kept(args.out, SECTIONS[name], args.batch)
        for name in SECTIONS
        if name not in args.sections
    }
    rows = _train_steps(args, dims) if "train" in args.sections else kept["train_step"][0]
    inverses = _inverses(args, dims) if "inverse" in args.sections else kept["inverse"][0]
    payload = {
        "machine": machine() | {"threads": args.threads or torch.get_num_threads()},
        "device": args.device,
        "batch": args.batch,
        "train_step": rows,
        "inverse": inverses,
        "sizes": {"mmgn": MMGN_SIZE, "icnn": ICNN_SIZE, "cpflows_icnn3": CPFLOW_ICNN},
        **({"kept": {key: origin for key, (_, origin) in kept.items()}} if kept else {}),
    }
    print(rendered(payload))
    write_json(args.out, payload, smoke=args.quick)
    return payload


def _kept(path: Path, key: str, batch: int) -> tuple[list[dict], dict]:
    r"""The rows of section ``key`` in the run at ``path``, and where they came from."""
    if not path.is_file():
        raise SystemExit(f"--sections: {path} holds no run to keep the {key!r} rows from")
    old = json.loads(path.read_text())
    if old["batch"] != batch:
        raise SystemExit(
            f"--sections: {path} was run with batch {old['batch']}; this with {batch}"
        )
    keys = ("machine", "command", "commit", "date", "provenance")
    origin = old.get("kept", {}).get(key) or {k: old[k] for k in keys if k in old}
    return old[key], origin


def _train_steps(args: argparse.Namespace, dims: list[int]) -> list[dict]:
    r"""A training step per method and d: its time, peak memory and log-det error."""
    methods = ["dense", "structured", "stochastic", "cpflows"]
    rows = []
    for d in tqdm(dims, desc="logdet: training steps", unit="d"):
        for method in methods:
            if method == "dense" and d > args.dense_max:
                continue
            warm = 0 if method == "dense" else (args.warm or (5 if args.quick else 100))
            row = {"d": d, "method": method}
            row.update(
                isolated(
                    train_step,
                    fresh=not args.quick,
                    method=method,
                    d=d,
                    batch=args.batch,
                    repeats=5 if args.quick else 20,
                    threads=args.threads,
                    warm=warm,
                    device=args.device,
                )
            )
            if method == "structured" or (method != "dense" and d <= 256):
                row.update(
                    isolated(
                        logdet_error,
                        fresh=not args.quick,
                        method=method,
                        d=d,
                        batch=8,
                        threads=args.threads,
                        device=args.device,
                    )
                )
            rows.append(row)
            tqdm.write(markdown_table([row], TRAIN_COLUMNS).splitlines()[-1])
    for row in rows:
        dense = next((r for r in rows if r["d"] == row["d"] and r["method"] == "dense"), None)
        if dense and "seconds" in row and "seconds" in dense:
            row["speedup_vs_dense"] = dense["seconds"] / row["seconds"]
    return rows


def _inverses(args: argparse.Namespace, dims: list[int]) -> list[dict]:
    r"""The inverse per d and dtype: the solve, and its gradients beside the forward's."""
    inverses = []
    for d in tqdm(dims, desc="logdet: inverses", unit="d"):
        for dtype in ("float64", "float32"):
            inverses.append(
                {
                    "d": d,
                    "dtype": dtype,
                    **isolated(
                        inverse,
                        fresh=not args.quick,
                        d=d,
                        batch=args.batch,
                        dtype=dtype,
                        threads=args.threads,
                        device=args.device,
                    ),
                }
            )
            tqdm.write(markdown_table(inverses[-1:], INVERSE_COLUMNS).splitlines()[-1])
    return inverses


TRAIN_COLUMNS = [
    ("d", "d"),
    ("method", "method"),
    ("seconds", "s / step (init)"),
    ("speedup_vs_dense", "× dense"),
    ("seconds_trained", "s / step (trained)"),
    ("peak_mb", "peak MiB"),
    ("logdet_rel_error", "log-det rel. error"),
    ("parameters", "parameters"),
    ("error", "error"),
]
INVERSE_COLUMNS = [
    ("d", "d"),
    ("dtype", "dtype"),
    ("seconds", "s"),
    ("max_rel_residual", "max ‖T(x)−y‖/(1+‖y‖)"),
    ("max_newton_steps", "max Newton steps"),
    ("converged", "all converged"),
    ("forward_grad_seconds", "T(x) + backward (s)"),
    ("inverse_grad_seconds", "T⁻¹(y) + backward (s)"),
    ("inverse_grad_factorisations", "(T⁻¹ + backward − solve) ÷ (T + backward)"),
]


def rendered(payload: dict) -> str:
    r"""The two tables of a run's JSON: a training step per method and d, then the inverse;
    under a table kept from an earlier run (``--sections``), the command it came from."""
    kept = payload.get("kept", {})
    threads = kept.get("train_step", payload)["machine"]["threads"]
    device = payload.get("device", "cpu")
    where = f"{threads} threads" if device == "cpu" else f"on {device}"

    def origin(key: str) -> list[str]:
        if key not in kept:
            return []
        run = kept[key]
        return [f"(from `{run['command']}`, commit {str(run['commit'])[:7]}, {run['date'][:10]})"]

    return "\n\n".join(
        [
            f"Training step (forward + backward of the NLL), batch {payload['batch']}, "
            f"{where}, float32:",
            markdown_table(payload["train_step"], TRAIN_COLUMNS),
            *origin("train_step"),
            f"Inverse of the structured M-MGN map (damped Newton), batch {payload['batch']}:",
            markdown_table(payload["inverse"], INVERSE_COLUMNS),
            *origin("inverse"),
        ]
    )


if __name__ == "__main__":
    main()
