r"""Colour transfer: the optimal transport map between two images' RGB colour distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import image as mpimg

from otflows.maps import BrenierMap
from otflows.metrics import sinkhorn_divergence

__all__ = ["color_transfer", "read_image", "sample_pixels", "write_image"]


def read_image(path: str | Path) -> np.ndarray:
    r"""An RGB image ``[H, W, 3]`` with values in :math:`[0, 1]` (float64), from a PNG or JPEG.

    An alpha channel is accepted only when fully opaque (it would otherwise be lost).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> write_image(path, np.full((2, 3, 3), 0.5))
        >>> read_image(path).shape
        (2, 3, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        image = np.asarray(mpimg.imread(path))
    except Exception as error:  # Pillow's and matplotlib's many decoding errors
        raise ValueError(f"{path} is not a readable image: {error}") from error
    image = image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{path} must be an RGB image [H, W, 3]; got shape {image.shape}")
    if image.shape[2] == 4:
        if not np.all(image[..., 3] == 1.0):
            raise ValueError(f"{path} has a transparent alpha channel; give an RGB image")
        image = image[..., :3]
    return image


def write_image(path: str | Path, image: np.ndarray) -> None:
    r"""Saves an RGB image ``[H, W, 3]``, clipping values to :math:`[0, 1]`."""
    mpimg.imsave(path, np.clip(image, 0.0, 1.0))


def sample_pixels(image: np.ndarray, n: int, seed: int | None = None) -> np.ndarray:
    r"""``min(n, H·W)`` distinct pixels ``[n, 3]`` of an image ``[H, W, 3]``, drawn uniformly.

    Example:
        >>> sample_pixels(np.zeros((4, 5, 3)), 7, seed=0).shape
        (7, 3)
    """
    pixels = image.reshape(-1, image.shape[-1])
    rng = np.random.default_rng(seed)
    return pixels[rng.choice(len(pixels), size=min(n, len(pixels)), replace=False)]


def color_transfer(
    source: np.ndarray,
    target: np.ndarray,
    estimator: BrenierMap | None = None,
    pixels: int = 10_000,
    seed: int = 0,
    score_pixels: int = 1000,
) -> tuple[np.ndarray, BrenierMap, dict[str, float]]:
    r"""Recolours ``source`` with ``target``'s colours by the optimal map of their RGB clouds.

    The map :math:`T` is fitted on ``pixels`` random pixels of each image, then applied to every
    pixel of ``source``; being a Brenier map, it moves colours as little as possible in
    :math:`W_2` and is exactly invertible (``estimator.inverse_transform`` gives the original
    colours back from the unclipped result).

    Arguments:
        source: The image to recolour, ``[H, W, 3]`` in :math:`[0, 1]`.
        target: The image whose colours are wanted, ``[H', W', 3]``.
        estimator: The (unfitted) :class:`otflows.BrenierMap`; by default one with its
            defaults, seeded with ``seed``.
        pixels: Pixels of each image used for fitting (and for the scores).
        seed: Seeds the pixel samples.
        score_pixels: Fitting pixels of each image that the Sinkhorn divergence compares
            (its cost grows with their number squared).

    Returns:
        The recoloured image ``[H, W, 3]`` (unclipped), the fitted estimator, and scores: the
        transport cost :math:`\mathbb E\|x - T(x)\|^2` over all pixels, the Sinkhorn divergence
        (:func:`otflows.metrics.sinkhorn_divergence`) from the mapped to the target colours, and
        the fitting time.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> A, B = rng.random((8, 8, 3)), rng.random((8, 8, 3)) ** 2
        >>> quick = BrenierMap(max_iter=5, init_iter=5, hidden_features=4, progress=False)
        >>> out, fitted, scores = color_transfer(A, B, quick, pixels=64)
        >>> out.shape, sorted(scores)
        ((8, 8, 3), ['cost', 'seconds', 'sinkhorn'])
    """
    for name, image in (("source", source), ("target", target)):
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name} must be an RGB image array [H, W, 3]")
    if estimator is None:
        estimator = BrenierMap(random_state=seed)
    Xs, Xt = sample_pixels(source, pixels, seed), sample_pixels(target, pixels, seed + 1)
    estimator.fit(Xs=Xs, Xt=Xt)
    mapped = estimator.transform(source.reshape(-1, 3))
    scores = {
        "cost": float(np.square(mapped - source.reshape(-1, 3)).sum(-1).mean()),
        "sinkhorn": sinkhorn_divergence(estimator.transform(Xs[:score_pixels]), Xt[:score_pixels]),
        "seconds": estimator.log_["seconds"],
    }
    return mapped.reshape(source.shape), estimator, scores
