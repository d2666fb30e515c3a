"""Fits a flow and two Brenier maps; run alone or under ``torchrun`` by tests/test_distributed.py.

Usage: ``python data_parallel.py OUT_DIR`` writes ``OUT_DIR/rank<r>.pt`` (weights and losses).
"""

import sys
from pathlib import Path

import numpy as np
import torch

from otflows import BrenierFlow, BrenierMap, fit_flow
from otflows.training import distributed


def main(out: Path) -> None:
    distributed.init_from_environment("cpu")
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(0)
    # N = 203 with batches of 64: the last batch (11) splits unevenly over 2 processes
    X = rng.normal(size=(203, 3)) @ np.array([[1.0, 0.3, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.5]])
    torch.manual_seed(0)  # two blocks after ActNorms: data-dependent initialisation
    flow = BrenierFlow(3, "mmgn", num_blocks=2, hidden_features=8, num_modules=2)
    history = fit_flow(
        flow, X, epochs=2, batch_size=64, lr=1e-2, random_state=1, progress=False, X_val=X[:50]
    )
    result = {"flow": flow.state_dict(), "flow_loss": torch.tensor(history.loss)}
    # on a time budget every process stops at the same step, with the same learning rates
    torch.manual_seed(0)
    timed = BrenierFlow(3, "mmgn", num_blocks=1, hidden_features=8, num_modules=2)
    fit_flow(timed, X, max_iter=10**6, max_time=1.0, batch_size=64, random_state=1, progress=False)
    result["timed"] = timed.state_dict()
    Xt = 2.0 * rng.normal(size=(300, 3)) + 1.0
    # the semi-dual's conjugates to the inverse's tolerance: a loose one lets a row's Newton stop
    # one step earlier or later with the batch's summation order, moving x* by up to that tolerance
    objectives = {"semidual": {"name": "semidual", "rtol": None}}
    for objective in ("semidual", "sinkhorn", "likelihood"):
        otmap = BrenierMap(
            objective=objectives.get(objective, objective),
            hidden_features=8,
            max_iter=6,
            init_iter=4,
            batch_size=64,
            lr=1e-2,
            dtype=torch.float64,
            device="cpu",
            random_state=0,
            progress=False,
        ).fit(Xs=X, Xt=Xt)
        result[objective] = otmap.transform_.state_dict()
        result[f"{objective}_loss"] = torch.tensor(
            otmap.log_["init"]["loss"] + otmap.log_["fit"]["loss"]
        )
    torch.save(result, out / f"rank{distributed.world()[0]}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
