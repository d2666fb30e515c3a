r"""Normalizing flows built from Brenier transforms, with a standard normal base."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import ActNorm, CompositeTransform, Transform
from torch import Tensor

from otflows.nets import build_net
from otflows.transforms import BrenierTransform
from otflows.validation import as_samples

__all__ = ["BrenierFlow"]


class BrenierFlow(Flow):
    r"""A flow data → noise made of Brenier transforms, with a :math:`\mathcal N(0, I)` base.

    .. math:: \log p(x) = \log\mathcal N(T(x); 0, I) + \log\det J_T(x)

    With one block, :math:`T` is the gradient of a strongly convex function, so
    :meth:`transport` is the :math:`W_2`-optimal map from the data to :math:`T_\#\mu`
    (Brenier). Several blocks (each after an ``ActNorm`` by default) give a more expressive
    density model, but a composition of gradients of convex functions is not itself one:
    the stacked flow is not an OT map, and :meth:`transport` refuses it.

    Arguments:
        features: The dimension ``D``.
        net: The monotone gradient network of each block: ``"cmgn"``, ``"mmgn"``, ``"icgn"``
            or ``"icnn"``.
        num_blocks: The number of Brenier blocks.
        actnorm: Whether each block is preceded by an ``ActNorm`` (default: when
            ``num_blocks > 1``).
        gamma: The strong-monotonicity floor of each block.
        learn_gamma: Whether each block learns :math:`\gamma` above its floor.
        logdet: The log-det method of each block (see :class:`BrenierTransform`).
        transforms: Instead of the above, the transforms to chain (data → noise).
        net_kwargs: Sizes and options of the network (e.g. ``hidden_features``).

    Example:
        >>> flow = BrenierFlow(2, "mmgn", hidden_features=8, num_modules=2)
        >>> flow.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
        >>> flow.sample(3).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        features: int,
        net: str = "mmgn",
        *,
        num_blocks: int = 1,
        actnorm: bool | None = None,
        gamma: float = 1e-2,
        learn_gamma: bool = False,
        logdet: str = "auto",
        transforms: Sequence[Transform] | None = None,
        **net_kwargs: Any,
    ):
        if transforms is None:
            if num_blocks < 1:
                raise ValueError(f"num_blocks must be >= 1; got {num_blocks}")
            actnorm = num_blocks > 1 if actnorm is None else actnorm
            transforms = []
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
            config: dict[str, Any] | None = {
                "features": features,
                "net": net,
                "num_blocks": num_blocks,
                "actnorm": actnorm,
                "gamma": gamma,
                "learn_gamma": learn_gamma,
                "logdet": logdet,
                **net_kwargs,
            }
        else:
            transforms = list(transforms)
            if not transforms:
                raise ValueError("transforms must not be empty")
            config = None
        transform = transforms[0] if len(transforms) == 1 else CompositeTransform(transforms)
        super().__init__(transform, StandardNormal([features]))
        self.features = features
        self.config = config

    def _samples(self, x: Tensor | np.ndarray, name: str) -> Tensor:
        parameter = next(self.parameters())
        return as_samples(
            x, name, features=self.features, dtype=parameter.dtype, device=parameter.device
        )

    def log_prob(self, inputs: Tensor | np.ndarray, context: Tensor | None = None) -> Tensor:
        r"""The log-density :math:`\log p(x)` ``[B]`` of samples ``[B, D]`` (validated: shape,
        dtype, device, finite values; arrays are cast to the flow's dtype)."""
        return super().log_prob(self._samples(inputs, "inputs"), context)

    def sample(self, num_samples: int, context: Tensor | None = None) -> Tensor:
        r"""``num_samples`` samples ``[num_samples, D]`` by the Newton inverse of each block;
        differentiable (implicit-function gradients)."""
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}")
        return super().sample(num_samples, context)

    @property
    def blocks(self) -> list[BrenierTransform]:
        r"""The Brenier transforms of the flow, in data → noise order."""
        return [t for t in self._transform.modules() if isinstance(t, BrenierTransform)]

    def transport(self, x: Tensor | np.ndarray) -> Tensor:
        r"""The optimal transport map :math:`T(x)`, ``[B, D] -> [B, D]``; single block only.

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
        return self._transform.transport(self._samples(x, "x"))

    def _sample(self, num_samples: int, context: Tensor | None) -> Tensor:
        parameter = next(self.parameters())
        noise = torch.randn(
            num_samples, self.features, dtype=parameter.dtype, device=parameter.device
        )
        return self._transform.inverse(noise, context=context)[0]
