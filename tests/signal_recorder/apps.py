"""Append every task_started / task_finished a process receives to ``$TQ_SIGNAL_LOG``
(one JSON object a line), so a test can see what a real worker's listeners heard."""

from __future__ import annotations

import json
import os
from typing import Any

from django.apps import AppConfig


class SignalRecorderConfig(AppConfig):
    name = "tests.signal_recorder"
    label = "signal_recorder"

    def ready(self) -> None:
        from tasks_app.tasks_framework.compat import task_finished, task_started

        task_started.connect(record("task_started"), weak=False)
        task_finished.connect(record("task_finished"), weak=False)


def record(signal: str) -> Any:
    def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
        path = os.environ.get("TQ_SIGNAL_LOG")
        if not path:
            return
        line = {"signal": signal, "id": task_result.id, "status": str(task_result.status),
                "errors": [error.traceback for error in task_result.errors],
                "finished": task_result.finished_at is not None, "pid": os.getpid()}
        with open(path, "a") as log:
            log.write(json.dumps(line) + "\n")

    return receiver
