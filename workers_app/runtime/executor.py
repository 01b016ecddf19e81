"""Runs one handler call with its time limit and turns the outcome into a report."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tasks_app.core import tracing
from tasks_app.core.errors import NonRetryableError, UnknownTaskType
from tasks_app.core.progress import Reporter
from tasks_app.core.registry import HandlerRegistry, TaskContext
from tasks_app.core.task import Job


class TaskTimeout(BaseException):
    """Raised in a handler at its deadline; a BaseException so ``except Exception`` misses it."""


@dataclass(frozen=True)
class Report:
    """The outcome of one attempt."""

    ok: bool
    duration: float
    result_json: str = "null"
    error: str = ""
    permanent: bool = False
    interrupted: bool = False  # stopped at its time limit: the handler neither returned nor raised
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    """What the attempt raised, with its traceback, for the log record of its outcome."""

    @property
    def outcome(self) -> str:
        """success, error, non_retryable or timeout."""
        if self.ok:
            return "success"
        return "timeout" if self.interrupted else "non_retryable" if self.permanent else "error"


def timeout_message(seconds: float) -> str:
    """The error recorded for an attempt stopped at its time limit."""
    return f"timed out after {seconds:g} s"


_armed = False


def _raise_timeout(signum: int, frame: Any) -> None:
    if _armed:
        raise TaskTimeout()


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TaskTimeout` in the main thread after ``seconds`` (SIGALRM)."""
    global _armed
    if signal.getsignal(signal.SIGALRM) is not _raise_timeout:
        signal.signal(signal.SIGALRM, _raise_timeout)
    _armed = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)


class Executor:
    """Calls handlers from a registry; one per slot process."""

    def __init__(self, registry: HandlerRegistry, unknown_is_permanent: bool = False,
                 progress: Callable[[Job], Reporter] | None = None) -> None:
        self.registry = registry
        self.progress = progress  # builds the progress reporter of each attempt
        # With ACCEPT_UNKNOWN_TYPES the web takes types it has no handler for: a worker
        # without one fails them for good rather than retrying what cannot succeed.
        self.unknown_is_permanent = unknown_is_permanent
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, job: Job) -> Report:
        """Run the job's handler and report success or failure (in a span, with tracing)."""
        if not tracing.ENABLED or not tracing.wanted(job):
            return self._attempt(job)
        with tracing.attempt_span(job) as span:
            report = self._attempt(job)
            tracing.record_outcome(span, report.outcome, report.exception)
        return report

    def _attempt(self, job: Job) -> Report:
        start = time.perf_counter()
        try:
            result = self._call(job)
        except TaskTimeout as exc:
            return self._failed(start, exc, timeout_message(job.timeout), interrupted=True)
        except NonRetryableError as exc:
            return self._failed(start, exc, _describe(exc), permanent=True)
        except UnknownTaskType as exc:
            return self._failed(start, exc, f"no handler for type '{job.type}'",
                                permanent=self.unknown_is_permanent)
        except Exception as exc:
            return self._failed(start, exc, _describe(exc))
        try:
            result_json = json.dumps(result, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            return self._failed(start, exc, f"result is not JSON-serialisable: {exc}")
        return Report(True, time.perf_counter() - start, result_json=result_json)

    def _call(self, job: Job) -> Any:
        handler = self.registry.get(job.type)
        reporter = self.progress(job) if self.progress else None
        ctx = TaskContext(job.id, job.type, job.attempt, job.max_retries, job.priority,
                          job.metadata, reporter, job.parent_results)
        try:
            if handler.is_async:
                return self._event_loop().run_until_complete(
                    _limited(handler.func(job.payload, ctx), job.timeout))
            with time_limit(job.timeout):
                return handler.func(job.payload, ctx)
        finally:
            if reporter is not None:
                reporter.flush()  # the last progress report arrives before the outcome

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop

    @staticmethod
    def _failed(start: float, exc: BaseException, error: str, permanent: bool = False,
                interrupted: bool = False) -> Report:
        return Report(False, time.perf_counter() - start, error=error, permanent=permanent,
                      interrupted=interrupted, exception=exc)


async def _limited(coro: Any, seconds: float) -> Any:
    """Await ``coro`` under the task's time limit: TaskTimeout when *our* limit expires; a
    handler's own TimeoutError stays an ordinary failure with its own message."""
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            return await coro
    except TimeoutError:
        if limit.expired():
            raise TaskTimeout() from None
        raise


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else exc.__class__.__name__
