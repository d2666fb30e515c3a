r"""Each feature on its own: a monotone rational-quadratic spline per feature, started at the map
that sends each of the data's marginals to the standard normal (the Gaussian copula's
marginals), and trained with the rest of the flow."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from nflows.transforms import Transform
from torch import Tensor, nn

__all__ = ["MarginalSpline", "rational_quadratic"]

# the spline's box in standardised units, [-BOUND, BOUND] (the identity outside); its knots'
# normal scores span ±SCORES, the data's quantiles from Φ(-2.5) = 0.6 % to 99.4 %
BOUND = 5.0
SCORES = 2.5
# bins and slopes are kept at least this wide and this steep, relative to the identity's
MIN_WIDTH = 1e-5
MIN_SLOPE = 1e-3


def rational_quadratic(
    x: Tensor, knots_x: Tensor, knots_y: Tensor, slopes: Tensor, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    r"""The monotone rational-quadratic spline of Gregory & Delbourgo (1982), as neural spline
    flows use it (Durkan et al. 2019), per feature: ``x [B, D]`` inside the knots' range
    ``knots_x [D, K + 1]`` onto ``knots_y [D, K + 1]`` (both increasing), with derivatives
    ``slopes [D, K + 1]`` at the knots. In bin :math:`k`, with :math:`\xi = (x - x_k)/w_k`,
    :math:`s_k = h_k / w_k`,

    .. math:: y = y_k + h_k\,\frac{s_k\xi^2 + \delta_k\xi(1 - \xi)}
        {s_k + (\delta_{k+1} + \delta_k - 2s_k)\,\xi(1 - \xi)}

    Returns the outputs ``[B, D]`` and each element's :math:`\log y'(x)` ``[B, D]`` (with
    ``inverse``: :math:`x(y)`, the root of a quadratic, and :math:`-\log y'(x)`).

    Example:
        >>> knots, slopes = torch.tensor([[-1.0, 0.0, 1.0]]), torch.ones(1, 3)
        >>> y, log_slope = rational_quadratic(torch.tensor([[0.5]]), knots, knots, slopes)
        >>> round(float(y), 6), round(float(log_slope), 6)
        (0.5, 0.0)
    """
    K = knots_x.shape[1] - 1
    grid = (knots_y if inverse else knots_x).contiguous()  # [D, K + 1]
    k = (torch.searchsorted(grid, x.T.contiguous(), right=True) - 1).clamp(0, K - 1)  # [D, B]

    def at(values: Tensor, shift: int = 0) -> Tensor:
        return values.gather(1, k + shift)  # [D, B]

    x_k, w = at(knots_x), at(knots_x, 1) - at(knots_x)
    y_k, h = at(knots_y), at(knots_y, 1) - at(knots_y)
    d_k, d_k1 = at(slopes), at(slopes, 1)
    s = h / w
    curvature = d_k1 + d_k - 2 * s  # [D, B]
    if inverse:
        dy = x.T - y_k
        a = h * (s - d_k) + dy * curvature
        b = h * d_k - dy * curvature
        c = -s * dy
        xi = (2 * c / (-b - torch.sqrt((b.square() - 4 * a * c).clamp_min(0)))).clamp(0, 1)
        out = x_k + xi * w
    else:
        xi = ((x.T - x_k) / w).clamp(0, 1)
        out = y_k + h * (s * xi.square() + d_k * xi * (1 - xi)) / (s + curvature * xi * (1 - xi))
    t = xi * (1 - xi)
    numerator = s.square() * (d_k1 * xi.square() + 2 * s * t + d_k * (1 - xi).square())
    log_slope = torch.log(numerator) - 2 * torch.log(s + curvature * t)
    return out.T, (-log_slope if inverse else log_slope).T


class MarginalSpline(Transform):
    r"""A monotone spline on each feature, :math:`y_d = f_d(x_d)`: the gradient of the
    separable convex :math:`\psi(x) = \sum_d \int f_d`, so a Brenier map itself, with a
    diagonal Jacobian and an exact, closed-form inverse.

    Each :math:`f_d` standardises its feature, :math:`z = (x_d - m_d)/s_d`, and applies a
    rational-quadratic spline (:func:`rational_quadratic`) of ``num_bins`` bins on
    ``[-BOUND, BOUND]`` (the identity in ``z`` outside, its slope 1 at the box's ends).
    Built at the identity; :meth:`fit_marginals` sets it to the map that sends each
    feature's empirical distribution to :math:`\mathcal N(0, 1)`: knots at the data's
    quantiles :math:`q_d(\Phi(t_j))` onto the normal scores :math:`t_j`. Followed by a
    Gaussian, that is the Gaussian copula of the data with spline marginals, a far better
    start than the Gaussian where the marginals are skewed, bounded or multimodal
    (dequantised pixels).

    Arguments:
        features: The dimension ``D``.
        num_bins: The bins ``K`` of each feature's spline.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> step = MarginalSpline(2)
        >>> x = torch.randn(1000, 2).exp()  # log-normal marginals
        >>> step.fit_marginals(x)
        >>> z, logabsdet = step(x)
        >>> deciles = z.detach().quantile(torch.tensor([0.1, 0.5, 0.9]), dim=0)  # [3, 2]
        >>> bool(torch.allclose(deciles.T, torch.tensor([-1.28, 0.0, 1.28]), atol=0.15))
        True
        >>> bool(torch.allclose(step.inverse(z)[0], x, atol=1e-4))
        True
    """

    def __init__(self, features: int, num_bins: int = 16):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"num_bins must be at least 2; got {num_bins}")
        self.register_buffer("loc", torch.empty(features))
        self.register_buffer("scale", torch.empty(features))
        self.unnormalized_widths = nn.Parameter(torch.empty(features, num_bins))
        self.unnormalized_heights = nn.Parameter(torch.empty(features, num_bins))
        self.unnormalized_slopes = nn.Parameter(torch.empty(features, num_bins - 1))
        self.to_identity()

    @torch.no_grad()
    def to_identity(self) -> None:
        r"""Sets every feature's map to the identity, as it is built."""
        self.unnormalized_widths.zero_()
        self.unnormalized_heights.zero_()
        # softplus⁻¹(1 - MIN_SLOPE): slope 1 at every inner knot
        self.unnormalized_slopes.fill_(math.log(math.expm1(1 - MIN_SLOPE)))
        self.loc.zero_()
        self.scale.fill_(1.0)

    def knots(self) -> tuple[Tensor, Tensor, Tensor]:
        r"""The knots ``[D, K + 1]`` in ``z`` and in ``y``, and the slopes there ``[D, K + 1]``."""

        def positions(unnormalized: Tensor) -> Tensor:
            K = unnormalized.shape[1]
            fractions = MIN_WIDTH + (1 - MIN_WIDTH * K) * torch.softmax(unnormalized, dim=1)
            return F.pad(2 * BOUND * torch.cumsum(fractions, dim=1) - BOUND, (1, 0), value=-BOUND)

        slopes = F.pad(MIN_SLOPE + F.softplus(self.unnormalized_slopes), (1, 1), value=1.0)
        return positions(self.unnormalized_widths), positions(self.unnormalized_heights), slopes

    def _spline(self, z: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        knots_x, knots_y, slopes = (v.to(z) for v in self.knots())
        inside = z.abs() < BOUND
        y, log_slope = rational_quadratic(
            z.clamp(-BOUND, BOUND), knots_x, knots_y, slopes, inverse
        )
        return torch.where(inside, y, z), torch.where(inside, log_slope, 0.0)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        loc, scale = self.loc.to(inputs), self.scale.to(inputs)
        y, log_slope = self._spline((inputs - loc) / scale, inverse=False)
        return y, (log_slope - torch.log(scale)).sum(-1)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        loc, scale = self.loc.to(inputs), self.scale.to(inputs)
        z, log_slope = self._spline(inputs, inverse=True)
        return loc + scale * z, (log_slope + torch.log(scale)).sum(-1)

    @torch.no_grad()
    def fit_marginals(self, x: Tensor) -> None:
        r"""Sets each feature's map to send the empirical distribution of its column of
        ``x [N, D]`` to :math:`\mathcal N(0, 1)`: standardised by the column's mean and standard
        deviation, inner knots at its quantiles of the probabilities :math:`\Phi(t_j)`,
        :math:`t_j` evenly spaced on :math:`[-2.5, 2.5]`, mapped onto :math:`t_j`; the slope at
        a knot the geometric mean of its bins' (the Gaussian's own slope where the column is
        Gaussian). Bins narrower than their floor are widened, so tied values (discrete
        columns) give steep but finite slopes."""
        if x.dim() != 2 or x.shape[1] != self.loc.shape[0] or x.shape[0] < 2:
            raise ValueError(
                f"x must have shape [N, {self.loc.shape[0]}] with N >= 2; got {tuple(x.shape)}"
            )
        x = x.to(torch.float64)
        loc, scale = x.mean(0), x.std(0)
        if not bool((scale > 0).all()):
            column = int((scale <= 0).nonzero()[0])
            raise ValueError(f"x: column {column} is constant; its marginal has no density")
        K = self.unnormalized_widths.shape[1]
        scores = torch.linspace(-SCORES, SCORES, K - 1, dtype=x.dtype, device=x.device)
        half = (scores[1] - scores[0]) / 2  # the slope at a knot: over ± half a bin's scores
        z = (x - loc) / scale
        quantiles, below, above = (
            torch.quantile(z, torch.special.ndtr(t), dim=0).T.clamp(-BOUND, BOUND)  # [D, K - 1]
            for t in (scores, scores - half, scores + half)
        )
        widths = self._fractions(quantiles)  # [D, K]
        heights = self._fractions(scores.expand_as(quantiles))
        for parameter, fractions in (
            (self.unnormalized_widths, widths),
            (self.unnormalized_heights, heights),
        ):  # the inverse of knots()' floor and softmax, up to the softmax's free constant
            parameter.copy_(torch.log((fractions - MIN_WIDTH) / (1 - MIN_WIDTH * K)))
        secants = (heights / widths).clamp_min(2 * MIN_SLOPE)  # [D, K]
        central = 2 * half / (above - below).clamp_min(2 * BOUND * MIN_WIDTH)  # [D, K - 1]
        # bounded by the secants either side: Fritsch and Carlson's monotone range
        lowest = torch.minimum(secants[:, 1:], secants[:, :-1])
        highest = torch.maximum(secants[:, 1:], secants[:, :-1])
        slopes = torch.minimum(torch.maximum(central, lowest / 3), 3 * highest)
        excess = slopes - MIN_SLOPE  # softplus⁻¹, stable for steep slopes
        self.unnormalized_slopes.copy_(excess + torch.log(-torch.expm1(-excess)))
        self.loc.copy_(loc)
        self.scale.copy_(scale)

    @staticmethod
    def _fractions(inner: Tensor) -> Tensor:
        r"""Each bin's share ``[D, K]`` of the box that puts the inner knots ``[D, K - 1]`` at
        ``inner``, each bin at least twice its floor."""
        edges = F.pad(inner, (1, 0), value=-BOUND)
        edges = F.pad(edges, (0, 1), value=BOUND)
        fractions = torch.diff(edges, dim=1).clamp_min(0) / (2 * BOUND)
        fractions = fractions.clamp_min(2 * MIN_WIDTH)
        return fractions / fractions.sum(1, keepdim=True)
