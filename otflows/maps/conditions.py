r"""Conditional maps :math:`T(\cdot\,; c)`: samples labelled by condition, drawn so that every
condition weighs the same on both sides of the objective.

For a conditional map the semi-dual objective is an average over conditions,

.. math:: L = \mathbb E_c\big[\mathbb E_{x\sim\mu_c}\varphi(x; c)
    + \mathbb E_{y\sim\nu_c}\varphi^*(y; c)\big],

and it is bounded below only when the source and the target terms weigh each condition
alike (otherwise a constant :math:`k(c)` added to :math:`\varphi(\cdot\,; c)` lowers it without
end). A training step therefore draws target rows uniformly and gives each source row the
condition of another uniformly drawn target row (:class:`ByCondition`); held-out terms are
reweighted to the same weights (:meth:`Conditions.balance`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from otflows.training.samplers import WithReplacement
from otflows.transforms.affine import bures_map

__all__ = ["ByCondition", "Conditions"]


class Conditions:
    r"""The distinct conditions of labelled source and target rows, and each row's.

    Arguments:
        ct: The target rows' conditions ``[M, C]``.
        cs: The source rows' conditions ``[N, C]``, or ``None`` when the source samples are
            shared by every condition (e.g. control cells, or noise).
        strict: Whether every condition must have both source and target rows (a training
            set's); held-out rows need not.

    Attributes:
        table: The distinct conditions ``[G, C]``.
        target: Each target row's condition, an index into ``table`` ``[M]``.
        source: Each source row's ``[N]`` (``None``: shared).

    Example:
        >>> ct = torch.tensor([[0.0], [1.0], [1.0]])
        >>> conditions = Conditions(ct, cs=torch.tensor([[1.0], [0.0]]))
        >>> conditions.table.flatten().tolist(), conditions.source.tolist()
        ([0.0, 1.0], [1, 0])
    """

    def __init__(self, ct: Tensor, cs: Tensor | None = None, strict: bool = True):
        rows = ct if cs is None else torch.cat([cs, ct])
        self.table, inverse = torch.unique(rows, dim=0, return_inverse=True)
        G = len(self.table)
        self.target = inverse[len(rows) - len(ct) :]
        self.source = None if cs is None else inverse[: len(cs)]
        self.target_counts = torch.bincount(self.target, minlength=G)
        if self.source is None:
            return
        self.source_counts = torch.bincount(self.source, minlength=G)
        if strict:
            for name, rows, other, others in (
                ("cs", self.source_counts, "ct", self.target_counts),
                ("ct", self.target_counts, "cs", self.source_counts),
            ):
                missing = (rows > 0) & (others == 0)
                if bool(missing.any()):
                    example = self.table[missing.nonzero()[0, 0]].tolist()
                    raise ValueError(
                        f"cs and ct must label the same conditions: {int(missing.sum())} "
                        f"condition(s) of {name} have no rows in {other} (e.g. {example})"
                    )
        # the source rows sorted by condition: those of condition g are order[start[g]:][:n_g]
        self.order = torch.argsort(self.source, stable=True)
        self.start = torch.cumsum(self.source_counts, 0) - self.source_counts

    def __len__(self) -> int:
        return len(self.table)

    def source_rows(self, k: Tensor, sources: int, generator: torch.Generator) -> Tensor:
        r"""Source rows ``[B]``: for each target row ``k [B]``, one drawn uniformly among the
        source rows of its condition (among all ``sources`` rows when they are shared)."""
        if self.source is None:
            return torch.randint(sources, k.shape, generator=generator)
        g = self.target[k]
        u = torch.rand(k.shape, generator=generator, dtype=torch.float64)
        offset = (u * self.source_counts[g]).long().minimum(self.source_counts[g] - 1)
        return self.order[self.start[g] + offset]

    def balance(self) -> tuple[Tensor, Tensor, Tensor]:
        r"""Weights that give each condition the same weight on both sides: ``p [G]``, the
        target rows' share of each condition that has source rows too (renormalised), and
        the rows' weights ``w_s [N]``, ``w_t [M]`` with :math:`\operatorname{mean}(w_s f) =
        \sum_g p_g\, \operatorname{mean}_{g}(f)` for source terms ``f`` (likewise for target
        ones); a condition missing on one side gets weight 0. Needs labelled source rows."""
        assert self.source is not None
        both = (self.source_counts > 0) & (self.target_counts > 0)
        p = torch.where(both, self.target_counts.double(), 0.0)
        p = p / p.sum()
        N, M = len(self.source), len(self.target)
        w_s = (p * N / self.source_counts.clamp_min(1))[self.source]
        w_t = (p * M / self.target_counts.clamp_min(1))[self.target]
        return p, w_s, w_t

    def bures_maps(
        self, Xs: Tensor, Xt: Tensor, pooled: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        r"""Each condition's Bures map :math:`x \mapsto A_g x + b_g`, ``A [G, D, D]``,
        ``b [G, D]``, between the Gaussians fitted to its source rows (all of ``Xs`` when
        shared) and its target rows; ``pooled`` (the map of all rows) where a condition has
        fewer than ``D + 1`` rows on a side."""
        D = Xs.shape[1]
        A, b = pooled[0].repeat(len(self), 1, 1), pooled[1].repeat(len(self), 1)
        for g in range(len(self)):
            target = Xt[self.target == g]
            source = Xs if self.source is None else Xs[self.source == g]
            if min(len(source), len(target)) > D:
                A[g], b[g] = bures_map(source, target)
        return A, b


class ByCondition(WithReplacement):
    r"""The minibatches of a conditional fit: ``batch_sizes[1]`` target rows ``j`` drawn
    uniformly, and ``batch_sizes[0]`` source rows ``i``, each of the condition of another
    uniformly drawn target row ``k`` (:meth:`Conditions.source_rows`), so both sides weigh each
    condition by its share of the target rows. :meth:`draw` gives ``(i, j, k)``.

    Example:
        >>> conditions = Conditions(torch.tensor([[0.0], [1.0], [1.0]]))
        >>> sampler = ByCondition(conditions, 10, (4, 2), torch.Generator())
        >>> [index.shape[0] for index in sampler.draw()]
        [4, 2, 4]
    """

    def __init__(
        self,
        conditions: Conditions,
        sources: int,
        batch_sizes: tuple[int, int],
        generator: torch.Generator,
    ):
        super().__init__((sources, len(conditions.target)), batch_sizes, generator)
        self.conditions = conditions

    def draw(self) -> tuple[Tensor, Tensor, Tensor]:
        (sources, M), (B, B_t) = self.sizes, self.batch_sizes
        j = torch.randint(M, (B_t,), generator=self.generator)
        k = torch.randint(M, (B,), generator=self.generator)
        return self.conditions.source_rows(k, sources, self.generator), j, k
