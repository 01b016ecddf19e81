"""Handler registry: which function runs which task type."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import UnknownTaskType


@dataclass(frozen=True)
class TaskContext:
    """What a handler knows about the attempt it runs."""

    task_id: str
    type: str
    attempt: int
    max_retries: int
    priority: int
    metadata: dict[str, Any] = field(default_factory=dict)
    reporter: Any = field(default=None, repr=False, compare=False)
    """Where :meth:`progress` goes (a :class:`.progress.Reporter`); None: nowhere."""
    parent_results: Any = None
    """In a workflow step: the previous step's result, or a group's results in member order
    (see core/workflows.py); None outside a workflow and for its first steps."""

    def progress(self, done: float, total: float | None = None, message: str = "") -> bool:
        """Report how far the attempt got (throttled to a few writes a second; the last
        report is always written when the handler returns).  Returns True when recorded or
        kept for the next write, False when Redis could not be reached; raises
        :class:`.errors.StaleLease` when the attempt lost its lease (stop working: its
        outcome will be discarded), TypeError or ValueError for bad values."""
        if self.reporter is None:
            from .progress import validate

            validate(done, total, message)
            return False
        return bool(self.reporter.report(done, total, message))


Handler = Callable[[dict[str, Any], TaskContext], Any]
Resolver = Callable[[str], Handler | None]
"""Finds a handler for a task type nobody registered (e.g. a Django task's path), or None."""


@dataclass(frozen=True)
class Registered:
    """A handler and whether it is a coroutine function."""

    name: str
    func: Handler
    is_async: bool


class HandlerRegistry:
    """Maps task types to handlers."""

    def __init__(self) -> None:
        self._handlers: dict[str, Registered] = {}
        self._resolvers: list[Resolver] = []
        self._resolved: dict[str, Registered] = {}

    def register(self, name: str, func: Handler) -> Handler:
        """Register ``func`` for task type ``name``; re-registering the same function is a no-op."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("task type must be a non-empty string")
        current = self._handlers.get(name)
        if current is not None and _qualname(current.func) != _qualname(func):
            raise ValueError(f"task type {name!r} already has a handler: {_qualname(current.func)}")
        self._handlers[name] = Registered(name, func, inspect.iscoroutinefunction(func))
        return func

    def add_resolver(self, resolver: Resolver) -> None:
        """Consult ``resolver`` for types with no registered handler (once per type)."""
        if resolver not in self._resolvers:
            self._resolvers.append(resolver)

    def get(self, name: str) -> Registered:
        """The handler for a task type; raises :class:`UnknownTaskType`."""
        found = self._handlers.get(name) or self._resolved.get(name) or self._resolve(name)
        if found is None:
            raise UnknownTaskType(f"unknown task type '{name}'")
        return found

    def _resolve(self, name: str) -> Registered | None:
        for resolver in self._resolvers:
            func = resolver(name)
            if func is not None:
                found = Registered(name, func, inspect.iscoroutinefunction(func))
                self._resolved[name] = found
                return found
        return None

    def unregister(self, name: str) -> None:
        """Forget a task type (tests)."""
        self._handlers.pop(name, None)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._handlers or name in self._resolved or self._resolve(name) is not None

    def names(self) -> list[str]:
        """Registered task types, sorted (resolved ones are not listed)."""
        return sorted(self._handlers)


def _qualname(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


registry = HandlerRegistry()
"""The process-wide registry the decorator fills."""


def handler(name: str, *, into: HandlerRegistry | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function (sync or ``async def``) for task type ``name``."""

    def decorate(func: Handler) -> Handler:
        return (into or registry).register(name, func)

    return decorate
