r"""Normalizing flows built from Brenier transforms, with a standard normal base."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import ActNorm, CompositeTransform, Transform
from torch import Tensor

from otflows.nets import CONDITIONAL_NETS, build_net
from otflows.training.checkpoint import FORMAT_VERSION, atomic_save, safe_load
from otflows.transforms.affine import check_contractible, start_affine, whitening_map
from otflows.transforms.brenier import BrenierTransform
from otflows.transforms.logit import BoxLogit
from otflows.transforms.marginal import MarginalSpline
from otflows.validation import MappedSamples, as_samples
from otflows.validation.arguments import RecordsArguments

__all__ = ["CONDITIONAL_FLOW", "DENSITY_FLOW", "BrenierFlow", "load_flow", "save_flow"]

# BrenierFlow's architecture where net and num_blocks are not given: for a density, a spline
# on each feature, then 4 ICGN blocks of width 32 after ActNorms, the choice of the fit defaults
# study (the docs' fit-defaults page: the ICGN learned more per CPU second than the M-MGN on
# every set, wider or deeper stacks no more, and the marginal splines more on every set); a
# conditional flow, not studied so (the ICGN has no conditional form), one M-MGN block
DENSITY_FLOW: dict[str, Any] = {
    "net": "icgn",
    "num_blocks": 4,
    "hidden_features": 32,
    "marginals": True,
}
CONDITIONAL_FLOW: dict[str, Any] = {"net": "mmgn", "num_blocks": 1}


class BrenierFlow(RecordsArguments, Flow):
    r"""A flow data → noise made of Brenier transforms, with a :math:`\mathcal N(0, I)` base.

    .. math:: \log p(x) = \log\mathcal N(T(x); 0, I) + \log\det J_T(x)

    With one block, :math:`T` is the gradient of a strongly convex function, so
    :meth:`transport` is the :math:`W_2`-optimal map from the data to :math:`T_\#\mu`
    (Brenier). Several blocks (each after an ``ActNorm`` by default) give a more expressive
    density model, but a composition of gradients of convex functions is not itself one:
    the stacked flow is not an OT map, and :meth:`transport` refuses it.

    Arguments:
        features: The dimension ``D``.
        net: The monotone gradient network of each block: ``"cmgn"``, ``"mmgn"``, ``"icgn"``,
            ``"icnn"`` or ``"qicnn"``; for a conditional flow ``"mmgn"``, ``"qicnn"`` or
            ``"picnn"``. ``None``: :data:`DENSITY_FLOW`'s ICGN of width 32 (a conditional
            flow: :data:`CONDITIONAL_FLOW`'s M-MGN).
        num_blocks: The number of Brenier blocks (``None``: 4, or 1 for a conditional flow;
            one block is the OT map to the base, :meth:`transport`).
        actnorm: Whether each block is preceded by an ``ActNorm`` (default: when
            ``num_blocks > 1``).
        gamma: The strong-monotonicity floor of each block.
        learn_gamma: Whether each block learns :math:`\gamma` above its floor.
        logdet: The log-det method of each block (see :class:`BrenierTransform`).
        context_features: The context's dimension ``C`` of a conditional flow
            :math:`p(x \mid c)`: every block's network is conditional
            (:math:`T(\cdot\,; c)` a Brenier map for each ``c``), and :meth:`log_prob` and
            :meth:`sample` take a ``context``, as nflows' conditional flows do.
        bounds: ``(low, high)`` where the data lie in a known box (pixel levels, shares;
            each a number or one per feature): the first step is then the box's logit
            (:class:`otflows.transforms.logit.BoxLogit`), so the density is zero outside the box
            instead of spilling over its faces; ``None``: unbounded data.
        marginals: Whether a spline on each feature
            (:class:`otflows.transforms.marginal.MarginalSpline`, a separable Brenier map) comes
            before the blocks; the starts set it to send each of the data's marginals to
            :math:`\mathcal N(0, 1)` (:meth:`fit_marginals`), so the flow starts at the
            Gaussian copula of the data. ``None``: :data:`DENSITY_FLOW`'s choice where there
            are several blocks (one block is the OT map to the base, :meth:`transport`), none
            for a conditional flow.
        transforms: Instead of the above, the transforms to chain (data → noise); they may
            mix conditional Brenier blocks with nflows' own conditional transforms.
        net_kwargs: Sizes and options of the network (e.g. ``hidden_features``).

    Example:
        >>> flow = BrenierFlow(2, "mmgn", hidden_features=8, num_modules=2)
        >>> flow.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
        >>> flow.sample(3).shape
        torch.Size([3, 2])
        >>> conditional = BrenierFlow(2, "mmgn", context_features=1, hidden_features=8)
        >>> conditional.log_prob(torch.randn(5, 2), context=torch.randn(5, 1)).shape
        torch.Size([5])
        >>> conditional.sample(3, context=torch.randn(4, 1)).shape
        torch.Size([4, 3, 2])
    """

    def __init__(
        self,
        features: int,
        net: str | None = None,
        *,
        num_blocks: int | None = None,
        actnorm: bool | None = None,
        gamma: float = 1e-2,
        learn_gamma: bool = False,
        logdet: str = "auto",
        context_features: int | None = None,
        bounds: tuple[float | Sequence[float], float | Sequence[float]] | None = None,
        marginals: bool | None = None,
        transforms: Sequence[Transform] | None = None,
        **net_kwargs: Any,
    ):
        if transforms is None:
            net, num_blocks, marginals = self._architecture(
                net, num_blocks, marginals, context_features, net_kwargs
            )
            actnorm = num_blocks > 1 if actnorm is None else actnorm
            transforms = []
            if bounds is not None:
                if len(bounds) != 2:
                    raise ValueError(f"bounds must be a pair (low, high); got {bounds!r}")
                transforms.append(BoxLogit(features, *bounds))
            if marginals:
                transforms.append(MarginalSpline(features))
            for _ in range(num_blocks):
                if actnorm:
                    transforms.append(ActNorm(features))
                transforms.append(
                    BrenierTransform(
                        build_net(net, features, **net_kwargs),
                        gamma=gamma,
                        learn_gamma=learn_gamma,
                        logdet=logdet,
                    )
                )
        else:
            transforms = list(transforms)
            if not transforms:
                raise ValueError("transforms must not be empty")
            if bounds is not None or marginals:
                raise ValueError(
                    "give bounds and marginals or transforms: with transforms, chain a BoxLogit "
                    "or a MarginalSpline"
                )
        transform = transforms[0] if len(transforms) == 1 else CompositeTransform(transforms)
        super().__init__(transform, StandardNormal([features]))
        self.features = features
        self.context_features = context_features

    def _architecture(
        self,
        net: str | None,
        num_blocks: int | None,
        marginals: bool | None,
        context_features: int | None,
        net_kwargs: dict[str, Any],
    ) -> tuple[str, int, bool]:
        r"""The network, number of blocks and marginal splines, the defaults filled in
        (:data:`DENSITY_FLOW`, :data:`CONDITIONAL_FLOW`; the default width into ``net_kwargs``)
        and recorded in :attr:`arguments`, so that a checkpoint's config names the architecture
        whatever later defaults are; a clear error for a count or network the flow cannot take."""
        default = DENSITY_FLOW if context_features is None else CONDITIONAL_FLOW
        if net is None:
            net = default["net"]
            if "hidden_features" in default:
                net_kwargs.setdefault("hidden_features", default["hidden_features"])
        num_blocks = default["num_blocks"] if num_blocks is None else num_blocks
        if marginals is None:
            marginals = default.get("marginals", False) and num_blocks > 1
        width = {k: v for k, v in net_kwargs.items() if k == "hidden_features"}
        self.arguments.update(net=net, num_blocks=num_blocks, marginals=marginals, **width)
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1; got {num_blocks}")
        if context_features is not None:
            if marginals:
                raise ValueError("marginals: a conditional flow has no marginal splines")
            if net not in CONDITIONAL_NETS:
                raise ValueError(
                    f"net must be one of {CONDITIONAL_NETS} for a conditional flow "
                    f"(context_features={context_features}); got {net!r}"
                )
            net_kwargs["context_features"] = context_features
        return net, num_blocks, marginals

    @property
    def config(self) -> dict[str, Any] | None:
        r"""The arguments that rebuild the flow (JSON-serialisable; what :func:`save_flow`
        saves), or ``None`` for a flow built from ``transforms``."""
        if self.arguments["transforms"] is not None:
            return None
        return {k: v for k, v in self.arguments.items() if k != "transforms"}

    def _samples(self, x: Tensor | np.ndarray, name: str) -> Tensor:
        parameter = next(self.parameters())
        return as_samples(
            x, name, features=self.features, dtype=parameter.dtype, device=parameter.device
        )

    def log_prob(self, inputs: Tensor | np.ndarray, context: Tensor | None = None) -> Tensor:
        r"""The log-density :math:`\log p(x)` (:math:`\log p(x \mid c)` given ``context``
        ``[..., C]``) ``[...]`` of samples ``[..., D]`` (validated: shape, dtype, device, finite
        values; arrays are cast to the flow's dtype).

        The first call in training mode initialises each ``ActNorm`` from its batch's mean and
        standard deviation (as nflows does), so that batch must vary in every feature."""
        batch = tuple(inputs.shape[:-1])
        x = self._samples(_rows_of(inputs, self.features), "inputs")
        if context is not None:
            context = context.reshape(-1, context.shape[-1]) if context.dim() > 1 else context
        if self.training and any(
            isinstance(t, ActNorm) and not t.initialized for t in self._transform.modules()
        ):
            constant = (x.shape[0] < 2) or bool((x.std(0) == 0).any())
            if constant:
                raise ValueError(
                    f"inputs ({x.shape[0]} row(s)) initialise the flow's ActNorm layers from "
                    "their standard deviation, which must not be 0 in any feature: pass a "
                    "batch of varied rows, or call flow.eval() to evaluate an untrained flow"
                )
        return super().log_prob(x, context).reshape(batch)

    def sample(self, num_samples: int, context: Tensor | None = None) -> Tensor:
        r"""``num_samples`` samples ``[num_samples, D]`` (given ``context`` ``[K, C]``,
        ``num_samples`` for each: ``[K, num_samples, D]``) by the Newton inverse of each block;
        differentiable (implicit-function gradients)."""
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}")
        return super().sample(num_samples, context)

    def start_from_gaussian(
        self,
        X: Tensor | np.ndarray | MappedSamples,
        rows: int = 5000,
        shrink: float = 1e-3,
        marginals: bool = True,
    ) -> None:
        r"""Starts the flow at the Gaussian fitted to ``X [N, D]`` (its first ``rows`` rows, so
        a memory-mapped array is read no further): the first Brenier block at the whitening map
        :math:`\Sigma^{-1/2}(x - m)` (:func:`otflows.transforms.affine.whitening_map`), every
        later one at the identity (:func:`otflows.transforms.affine.start_affine`: on every
        input, to :math:`O(\text{shrink}^2)`, not only near ``X``; a larger ``shrink`` lets the
        networks' shrunk terms grow back faster in training, a less exact start). A flow with
        marginal splines starts at the Gaussian copula of ``X``: each feature's spline first
        sends its marginal to :math:`\mathcal N(0, 1)` (:meth:`fit_marginals`), and the Gaussian
        is fitted to the result (with ``marginals=False`` the splines are the identity).

        Every data-dependent initialisation (``ActNorm``, the blocks' normalisation) is done
        again here, on ``X`` as it flows through the chain, so the flow's density starts as the
        Gaussian's (or the copula's) on held-out points too, and training
        (:func:`otflows.fit_flow`) improves on that baseline instead of first learning it.

        Example:
            >>> flow = BrenierFlow(2, "mmgn", num_blocks=2, hidden_features=8, num_modules=2)
            >>> X = torch.randn(500, 2) @ torch.tensor([[2.0, 0.0], [1.0, 0.5]])
            >>> flow.start_from_gaussian(X)
            >>> Z = flow.transform_to_noise(X).detach()
            >>> bool(torch.allclose(Z.T.cov(), torch.eye(2), atol=1e-3))
            True
        """
        x = self._first_rows(X, rows)
        was_training = self.training
        self.train()
        first = True
        for transform in self._chain():
            if isinstance(transform, MarginalSpline):
                transform.fit_marginals(x) if marginals else transform.to_identity()
            if isinstance(transform, ActNorm):  # initialised by the pass below, on x
                transform.initialized.fill_(False)
            if isinstance(transform, BrenierTransform):
                transform.initialize(x)
                if first:
                    A, b = whitening_map(x)
                    check_contractible(A, transform.gamma)
                else:
                    A, b = torch.eye(self.features).to(x), torch.zeros(self.features).to(x)
                start_affine(transform, A, b, x, shrink)
                first = False
            with torch.no_grad():
                x = transform(x)[0]
        self.train(was_training)

    def fit_marginals(self, X: Tensor | np.ndarray | MappedSamples, rows: int = 5000) -> None:
        r"""Sets each :class:`otflows.transforms.marginal.MarginalSpline` step to send the
        marginals of ``X [N, D]`` (its first ``rows`` rows, as they reach the step) to
        :math:`\mathcal N(0, 1)`, the start of a flow trained from random weights.

        Example:
            >>> _ = torch.manual_seed(0)
            >>> flow = BrenierFlow(2, hidden_features=4, marginals=True)
            >>> flow.fit_marginals(10 * torch.rand(5000, 2))  # uniform marginals
            >>> spline = next(m for m in flow.modules() if isinstance(m, MarginalSpline))
            >>> z = spline(10 * torch.rand(2000, 2))[0].detach()  # new rows
            >>> bool((z.quantile(0.9, dim=0) - 1.28).abs().max() < 0.1)
            True
        """
        chain = self._chain()
        last = max((i for i, t in enumerate(chain) if isinstance(t, MarginalSpline)), default=-1)
        x = self._first_rows(X, rows)
        for transform in chain[: last + 1]:
            if isinstance(transform, MarginalSpline):
                transform.fit_marginals(x)
            with torch.no_grad():
                x = transform(x)[0]

    def _first_rows(self, X: Tensor | np.ndarray | MappedSamples, rows: int) -> Tensor:
        r"""The first ``rows`` rows of ``X``, validated (a memory-mapped array is read no
        further; its non-finite rows named)."""
        if isinstance(X, MappedSamples):
            X = X[torch.arange(min(rows, X.shape[0]))]
        return self._samples(X[:rows] if getattr(X, "ndim", 0) else X, "X")

    def _chain(self) -> list[Transform]:
        r"""The flow's transforms in data → noise order."""
        chain = self._transform
        return list(chain._transforms) if isinstance(chain, CompositeTransform) else [chain]

    @property
    def blocks(self) -> list[BrenierTransform]:
        r"""The Brenier transforms of the flow, in data → noise order."""
        return [t for t in self._transform.modules() if isinstance(t, BrenierTransform)]

    def transport(self, x: Tensor | np.ndarray, context: Tensor | None = None) -> Tensor:
        r"""The optimal transport map :math:`T(x)` (:math:`T(x; c)` given ``context``
        ``[B, C]``), ``[B, D] -> [B, D]``; single block only.

        Raises:
            ValueError: When the flow is not a single :class:`BrenierTransform`, whose
                composition with other maps is not the gradient of a convex function.
        """
        if not isinstance(self._transform, BrenierTransform):
            raise ValueError(
                "transport is defined only for a flow made of a single BrenierTransform: a "
                "composition of Brenier maps (or with ActNorm) is not the gradient of a convex "
                "function, hence not an optimal transport map"
            )
        return self._transform.transport(self._samples(x, "x"), context)

    def _sample(self, num_samples: int, context: Tensor | None) -> Tensor:
        parameter = next(self.parameters())
        contexts = 1 if context is None else len(context)
        noise = torch.randn(
            contexts * num_samples, self.features, dtype=parameter.dtype, device=parameter.device
        )
        if context is None:
            return self._transform.inverse(noise)[0]
        if context.dim() != 2:
            raise ValueError(f"context must have shape [K, C]; got {tuple(context.shape)}")
        repeated = context.repeat_interleave(num_samples, dim=0)  # [K·n, C]
        x = self._transform.inverse(noise, context=repeated)[0]
        return x.reshape(len(context), num_samples, self.features)


def save_flow(flow: BrenierFlow, path: str | Path) -> None:
    r"""Saves a :class:`BrenierFlow` built from a net name to ``path``.

    The file holds plain tensors and a JSON string, so :func:`load_flow` reads it with
    ``torch.load(weights_only=True)``; it is written atomically
    (:func:`otflows.training.checkpoint.atomic_save`).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "flow.pt")
        >>> flow = BrenierFlow(2, hidden_features=4)
        >>> save_flow(flow, path)
        >>> load_flow(path).config == flow.config
        True
    """
    if flow.config is None:
        raise ValueError(
            "this flow was built from transforms and has no config; save its state_dict() "
            "and rebuild it with the same transforms"
        )
    atomic_save(
        {
            "format_version": FORMAT_VERSION,
            "config": json.dumps(flow.config),
            "state_dict": {k: v.detach().cpu() for k, v in flow.state_dict().items()},
        },
        path,
    )


def load_flow(path: str | Path, map_location: str | torch.device = "cpu") -> BrenierFlow:
    r"""Loads a :class:`BrenierFlow` saved by :func:`save_flow` (``weights_only=True``).

    Raises:
        ValueError: When the file is not an otflows checkpoint of a known format version.
    """
    payload = safe_load(path, map_location)
    state = payload["state_dict"]
    config = {"marginals": False} | json.loads(payload["config"])  # files saved without it
    flow = BrenierFlow(**config).to(next(iter(state.values())).dtype)
    flow.load_state_dict(state)
    return flow


def _rows_of(x: Tensor | np.ndarray, features: int) -> Tensor | np.ndarray:
    r"""``x`` ``[..., F]`` as rows ``[B, F]``; any other shape is left for validation to
    reject."""
    return x if np.ndim(x) < 2 or x.shape[-1] != features else x.reshape(-1, features)
