r"""The methods of the peers benchmark (``otflows bench peers``), each run against its clock:
otflows' ``BrenierMap`` (for its steps, or for the budget), the entropic map, and OTT-JAX's
neural duals; the clock scores the map at checkpoints and stops the run at its budget."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from otflows.bench.clock import Clock, OutOfBudget, cpu_seconds_as_wall_clock

__all__ = ["ENTROPIC_ROWS", "run_entropic", "run_otflows", "run_ott"]

ENTROPIC_ROWS = 5000  # samples per side of the entropic map (its memory grows as their square)


def run_otflows(
    data: dict, clock: Clock, steps: int, timed: bool, seed: int, device: str
) -> dict[str, Any]:
    r"""``BrenierMap()`` fitted to ``data["Xs"]`` and ``data["Xt"]`` on ``device``, scored by
    ``clock`` at its checkpoints and after its last step (the kept weights): ``steps`` steps,
    or (``timed``) the clock's budget left, its time read in CPU seconds on the CPU. Returns
    how it stopped.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> data = {"Xs": rng.normal(size=(300, 2)), "Xt": rng.normal(size=(300, 2)) + 1}
        >>> clock = Clock(60.0, lambda T: (0.0, 1.0), timer=lambda: 0.0)  # a clock that stands
        >>> run_otflows(data, clock, steps=5, timed=False, seed=0, device="cpu")
        {'stopped': 'schedule'}
    """
    from otflows.maps import BrenierMap

    def callback(phase: str, step: int, otmap: BrenierMap) -> None:
        offset = 0 if phase == "Bures start" else otmap.init_iter
        clock.checkpoint(offset + step, otmap.transform)

    budget: dict[str, Any] = (
        {"max_iter": 10**6, "max_time": clock.budget - clock.seconds} if timed else {}
    )
    otmap = BrenierMap(
        **({"max_iter": steps} | budget), random_state=seed, progress=False, device=device
    )
    timing = cpu_seconds_as_wall_clock() if device == "cpu" else contextlib.nullcontext()
    try:
        with timing:
            otmap.fit(Xs=data["Xs"], Xt=data["Xt"], callback=callback)
    except OutOfBudget:
        return {"stopped": "budget"}
    # the kept weights (the best by validation) after the last step, scored even where the
    # budget ran out with it
    clock.points.pop()
    try:
        clock.checkpoint(otmap.init_iter + len(otmap.log_["fit"]["loss"]), otmap.transform)
    except OutOfBudget:
        return {"stopped": "budget"}
    return {"stopped": "budget" if otmap.log_["fit"]["out_of_time"] else "schedule"}


def run_entropic(data: dict, clock: Clock, device: str) -> dict[str, Any]:
    r"""The entropic map (:class:`otflows.EntropicMap`, its ε rule) of the first
    :data:`ENTROPIC_ROWS` samples per side, on ``device``: one checkpoint, once Sinkhorn has
    converged. Returns how it stopped.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> data = {"Xs": rng.normal(size=(100, 2)), "Xt": rng.normal(size=(100, 2)) + 1}
        >>> run_entropic(data, Clock(60.0, lambda T: (0.0, 1.0), timer=lambda: 0.0), device="cpu")
        {'stopped': 'converged'}
    """
    import torch

    from otflows.maps import EntropicMap

    Xs, Xt = (torch.as_tensor(data[k][:ENTROPIC_ROWS]).to(device) for k in ("Xs", "Xt"))
    fitted = EntropicMap().fit(Xs=Xs, Xt=Xt)
    try:
        clock.checkpoint(
            fitted.n_iter_,
            lambda X: fitted.transform(torch.as_tensor(X).to(device)).cpu().numpy(),
        )
    except OutOfBudget:
        return {"stopped": "budget"}
    return {"stopped": "converged"}


def _ott_solver(method: str, data: dict, batch_size: int, seed: int) -> Any:
    r"""OTT-JAX's solver of ``method`` as the peers benchmark sets it up (see :func:`run_ott`),
    its iterations left to the budget."""
    import jax
    import jax.numpy as jnp
    import optax
    from ott.neural.methods import expectile_neural_dual, neuraldual
    from ott.neural.networks import icnn, potentials

    d = data["Xs"].shape[1]
    rng = jax.random.PRNGKey(seed)
    iterations = 10**8  # the budget stops the run
    if method == "ott-enot":
        solver: Any = expectile_neural_dual.ExpectileNeuralDual(
            d, num_train_iters=iterations, rng=rng
        )
    elif method == "ott-w2nd-icnn":
        schedule = optax.cosine_decay_schedule(1e-3, 5001, alpha=1e-2)
        first = (jnp.asarray(data["Xs"][:batch_size]), jnp.asarray(data["Xt"][:batch_size]))
        solver = neuraldual.W2NeuralDual(
            d,
            icnn.ICNN(d, [64, 64, 64, 64], pos_weights=True, gaussian_map_samples=first),
            potentials.PotentialMLP([64, 64, 64, 64], is_potential=False),
            optax.adam(schedule, b1=0.5, b2=0.5),
            optax.adam(schedule, b1=0.9, b2=0.999),
            num_train_iters=iterations,
            rng=rng,
            pos_weights=True,
        )
    else:
        schedule = optax.cosine_decay_schedule(5e-4, 20_001, alpha=1e-2)
        optimizer = optax.adamw(learning_rate=schedule)
        mlp = potentials.PotentialMLP(dim_hidden=[64, 64, 64, 64])
        solver = neuraldual.W2NeuralDual(
            d,
            mlp,
            potentials.PotentialMLP(dim_hidden=[64, 64, 64, 64]),
            optimizer,
            optimizer,
            num_train_iters=iterations,
            rng=rng,
            pos_weights=False,
        )
    return solver


def run_ott(method: str, data: dict, clock: Clock, batch_size: int, seed: int) -> dict:
    r"""OTT-JAX's ``method`` (``"ott-enot"``: ``ExpectileNeuralDual``; ``"ott-w2nd-icnn"``,
    ``"ott-w2nd-mlp"``: ``W2NeuralDual``, see ``otflows bench peers``) on minibatches of
    ``batch_size`` rows drawn with replacement, scored by ``clock`` when due and stopped at
    its budget (JAX takes the GPU where it has one). Returns how it stopped. Needs
    ``pip install "otflows[peers]"``; for example::

        run_ott("ott-enot", data, Clock(300.0, score), batch_size=1024, seed=0)
    """
    import jax
    import jax.numpy as jnp

    solver = _ott_solver(method, data, batch_size, seed)
    generator = np.random.default_rng(seed)

    def batches(X: np.ndarray):
        X = X.astype(np.float32)
        while True:
            yield X[generator.integers(len(X), size=batch_size)]

    def callback(step: int, learned: Any) -> None:
        if clock.due():
            transport = jax.jit(learned.transport)  # compiled, as training is
            clock.checkpoint(step, lambda x: transport(jnp.asarray(x, jnp.float32)))

    try:
        solver(
            batches(data["Xs"]),
            batches(data["Xt"]),
            batches(data["Xs"]),
            batches(data["Xt"]),
            callback=callback,
        )
    except OutOfBudget:
        return {"stopped": "budget"}
    return {"stopped": "schedule"}
