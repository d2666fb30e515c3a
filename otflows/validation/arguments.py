r"""Arguments: constructor arguments recorded once, seeds in scikit-learn's convention, and
renamed arguments that keep their old names for one release."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np

__all__ = ["RecordsArguments", "deprecated_name", "seed_of"]


class RecordsArguments:
    r"""Records the arguments each instance was constructed with, defaults filled in and
    ``**kwargs`` merged, as :attr:`arguments`: what rebuilds it (e.g. from a checkpoint's JSON
    config), read off the constructor's signature rather than written out a second time.

    Example:
        >>> class Net(RecordsArguments):
        ...     def __init__(self, features: int, width: int = 8, **options: Any):
        ...         pass
        >>> Net(3, act="tanh").arguments
        {'features': 3, 'width': 8, 'act': 'tanh'}
    """

    arguments: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        signature = inspect.signature(cls.__init__)
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:  # a copy or an unpickling, whose state is restored afterwards
            return self
        bound.apply_defaults()
        arguments: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                arguments |= value
            else:
                arguments[name] = value
        object.__setattr__(self, "arguments", arguments)
        return self


def seed_of(random_state: Any) -> int | None:
    r"""An integer seed from ``random_state``: ``None`` (then ``None``), an int, or one drawn
    from a NumPy ``Generator`` or ``RandomState`` (scikit-learn's convention).

    Example:
        >>> seed_of(7), seed_of(None), seed_of(np.random.default_rng(0)) == seed_of(
        ...     np.random.default_rng(0)
        ... )
        (7, None, True)
    """
    if random_state is None:
        return None
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**62))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**62, dtype=np.int64))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise TypeError(
        "random_state must be None, an int, a numpy.random.Generator or RandomState; got "
        f"{type(random_state).__name__}"
    )


def deprecated_name(new: str, value: Any, old: str, old_value: Any) -> Any:
    r"""The value of the argument ``new``, given under its old name ``old`` or its own (never
    both): the old name works for one release, with a :class:`DeprecationWarning` naming the
    new one. ``None`` is "not given" for either.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     deprecated_name("random_state", None, "seed", 3), str(caught[0].message)
        (3, 'seed is renamed random_state; the old name will be removed in the next release')
    """
    if old_value is None:
        return value
    if value is not None:
        raise TypeError(f"give {new} alone: {old} is its old name")
    warnings.warn(
        f"{old} is renamed {new}; the old name will be removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value
