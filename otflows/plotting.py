r"""Figures: the coupling of a transport map (MGN paper, Fig. 2), colour transfer."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_color_transfer", "plot_coupling"]


def plot_coupling(
    X: np.ndarray, TX: np.ndarray, titles: tuple[str, str] = ("data x", "T(x)")
) -> Figure:
    r"""Two scatter plots, before and after a 2-D map, with points coloured by :math:`x_1`.

    A monotone map keeps the colours ordered; an OT map moves each point as little as it can.

    Arguments:
        X: Points ``[N, 2]``.
        TX: Their images ``[N, 2]``.
        titles: The two panels' titles.

    Returns:
        The figure (save it with ``fig.savefig(path)``).

    Example:
        >>> X = np.random.default_rng(0).normal(size=(100, 2))
        >>> len(plot_coupling(X, 2 * X).axes)
        3
    """
    fig = Figure(figsize=(9, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, points, title in zip(axes, (X, TX), titles, strict=True):
        scatter = ax.scatter(points[:, 0], points[:, 1], c=X[:, 0], s=3, cmap="viridis")
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.colorbar(scatter, ax=axes, label="$x_1$", shrink=0.8)
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
