"""The executor registry: the names `dispatch.executor` takes, and each executor's own checks of the dispatch keys.

An executor (a `hpcsweep.sweep.backends.Backend`) registers itself by its `name` and declares in `options` the
dispatch keys it reads that need more than their type checked (slurm: its time limits), each with the function that
checks a value. The configuration validates `dispatch` by asking this registry, so it never imports the sweep stage.
As submitit's plugins do, the registry knows the built-in executors by the module that registers them, and imports it
when it is first asked: validating a sweep file needs nothing imported beforehand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar

from hpcsweep.errors import UserError

#: The module whose import registers the built-in executors: local, debug and slurm, in this order.
BUILTIN = "hpcsweep.sweep.backends"

#: An executor's checks: dispatch key -> the function that returns a value of it checked (or raises a ValueError).
Options = Mapping[str, Callable[[Any], Any]]


class Executor(Protocol):
    """What the registry knows of an executor: its name, and its checks of the dispatch keys it reads."""

    name: ClassVar[str]
    options: ClassVar[Options]


E = TypeVar("E", bound=type[Executor])

_REGISTRY: dict[str, type[Executor]] = {}


def register(executor: E) -> E:
    """Make an executor available by its name (in sweep files, --executor and the logs' job names)."""
    _REGISTRY[executor.name] = executor
    return executor


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def executors() -> dict[str, type[Executor]]:
    """Every registered executor by its name, the built-in ones first."""
    importlib.import_module(BUILTIN)
    return _REGISTRY


def executor_names() -> list[str]:
    return list(executors())


def executor(name: str) -> type[Executor]:
    """The executor registered as `name`; a `UserError` naming the choices if none is."""
    try:
        return executors()[known(name)]
    except ValueError as err:
        raise UserError(str(err)) from None


def known(name: str) -> str:
    """`name` if an executor is registered by it, else a ValueError naming the choices (for the configuration)."""
    if name not in executors():
        raise ValueError(f"unknown executor {name!r}; valid choices: {', '.join(executor_names())}")
    return name


def check_option(key: str, value: Any) -> Any:
    """`value` of the dispatch key `key`, checked by every executor that reads the key (a ValueError if one refuses it)."""
    for kind in executors().values():
        check = kind.options.get(key)
        if check is not None:
            value = check(value)
    return value
