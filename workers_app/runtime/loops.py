"""Base class of the supervisor's background loops."""

from __future__ import annotations

import logging
import threading

from tasks_app.core.errors import BrokerUnavailable

from .backoff import Backoff

log = logging.getLogger("workers_app.runtime")


class Loop:
    """A daemon thread calling ``run_once`` every ``interval`` seconds until stopped."""

    name = "loop"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._delays = Backoff(0.2)

    def run_once(self) -> None:
        """Do one round of work (what the tests call)."""
        raise NotImplementedError

    def start(self) -> None:
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to end after its current round."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the loop's thread to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self) -> None:
        """Pause between rounds (blocking loops override this)."""
        self._stop.wait(self.interval)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                self._delays.reset()
                self.wait()
            except BrokerUnavailable as exc:
                self._backoff(exc)
            except Exception:
                log.exception("%s failed", self.name)
                self._stop.wait(1.0)

    def _backoff(self, exc: Exception) -> None:
        delay = self._delays.next_delay()
        log.warning("%s: redis unavailable (%s); retrying in %.1fs", self.name, exc, delay)
        self._stop.wait(delay)
