r"""Figures: the coupling of a transport map (MGN paper, Fig. 2), colour transfer."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure

__all__ = ["COUPLING_CAPTION", "plot_color_transfer", "plot_coupling", "plot_couplings"]


COUPLING_CAPTION = (
    "Each point keeps the colour of its x₁: a monotone map keeps the colours ordered, and an "
    "OT map moves every point as little as it can."
)


def plot_coupling(
    X: np.ndarray,
    TX: np.ndarray,
    titles: tuple[str, str] = ("data x", "T(x)"),
    caption: str | None = COUPLING_CAPTION,
) -> Figure:
    r"""Two scatter plots, before and after a 2-D map, with points coloured by :math:`x_1`
    (:func:`plot_couplings` with one map).

    Arguments:
        X: Points ``[N, 2]``.
        TX: Their images ``[N, 2]``.
        titles: The two panels' titles.
        caption: A line under the panels saying what to look at (``None``: none).

    Returns:
        The figure (save it with ``fig.savefig(path)``).

    Example:
        >>> X = np.random.default_rng(0).normal(size=(100, 2))
        >>> len(plot_coupling(X, 2 * X).axes)
        3
    """
    return plot_couplings(X, {titles[1]: TX}, titles[0], caption)


def plot_couplings(
    X: np.ndarray,
    images: dict[str, np.ndarray],
    title: str = "data x",
    caption: str | None = COUPLING_CAPTION,
    columns: int = 3,
) -> Figure:
    r"""Scatter plots of 2-D points ``X [N, 2]`` and of their images under several maps
    (``images``: title → ``[N, 2]``), every point coloured by its :math:`x_1`, in rows of
    ``columns`` panels of equal axes, with a colour bar and a one-line ``caption``.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(100, 2))
        >>> len(plot_couplings(X, {"2x": 2 * X, "-x": -X, "x + 1": X + 1, "x": X}).axes)
        7
    """
    panels = [(title, X, ("$x_1$", "$x_2$"))]
    panels += [(name, TX, ("$T(x)_1$", "$T(x)_2$")) for name, TX in images.items()]
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    width = 3.6 * cols + 1.2  # inches
    fig = Figure(figsize=(width, 3.4 * rows + (0.6 if caption else 0)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (name, points, (xlabel, ylabel)) in zip(axes, panels, strict=False):
        scatter = ax.scatter(points[:, 0], points[:, 1], c=X[:, 0], s=3, cmap="viridis")
        ax.set_title(name, fontsize=11)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_aspect("equal")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.colorbar(scatter, ax=axes[: len(panels)].tolist(), label="$x_1$", shrink=0.8)
    if caption:
        fig.supxlabel(textwrap.fill(caption, int(11 * width)), fontsize=10)
    return fig


def plot_color_transfer(source: np.ndarray, target: np.ndarray, mapped: np.ndarray) -> Figure:
    r"""Source, target and recoloured images side by side (values clipped to :math:`[0, 1]`).

    Example:
        >>> image = np.random.default_rng(0).random((4, 4, 3))
        >>> len(plot_color_transfer(image, image, image).axes)
        3
    """
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    titles = ("source", "target (colours wanted)", "source recoloured by T")
    for ax, image, title in zip(axes, (source, target, mapped), titles, strict=True):
        ax.imshow(np.clip(image, 0.0, 1.0))
        ax.set_title(title)
        ax.axis("off")
    return fig
