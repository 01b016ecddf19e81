"""The process-wide broker, built lazily from ``tq_settings``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed

from tasks_app.conf import tq_settings

if TYPE_CHECKING:
    from tasks_app.core.broker import Broker

_lock = threading.Lock()
_broker: Broker | None = None


def get_broker() -> Broker:
    """Return the shared Broker, creating it on first use."""
    global _broker
    with _lock:
        if _broker is None:
            from tasks_app.core.broker import Broker

            _broker = Broker.from_config(tq_settings.core_config())
        return _broker


def reset_broker() -> None:
    """Drop the shared Broker so the next get_broker() builds a fresh one."""
    global _broker
    with _lock:
        _broker = None


def reset_broker_on_change(*, setting: str, **kwargs: Any) -> None:
    """Reset the broker when ``TASKQUEUE`` changes (override_settings)."""
    if setting == "TASKQUEUE":
        reset_broker()


setting_changed.connect(reset_broker_on_change)
