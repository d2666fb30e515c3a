r"""Constructor arguments recorded once: a class lists its arguments in its signature only."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["RecordsArguments"]


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
