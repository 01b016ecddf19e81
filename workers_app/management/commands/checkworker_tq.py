"""``python manage.py checkworker_tq``: exit 0 if this host runs a worker whose heartbeat is fresh.

Meant for container health checks: the worker and the check share the hostname.
"""

from __future__ import annotations

import socket
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks_app import producer
from tasks_app.conf import tq_settings
from tasks_app.core.errors import BrokerUnavailable


class Command(BaseCommand):
    help = ("Exit 0 when a worker of this host (or --worker-id) has sent a heartbeat within "
            "TASKQUEUE['HEARTBEAT_TIMEOUT'] seconds; exit 1 otherwise.")
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--worker-id", default=None, help="check this worker id")
        parser.add_argument("--hostname", default=None,
                            help="check workers of this host (default: this machine's)")

    def handle(self, *args: Any, **opts: Any) -> None:
        hostname = opts["hostname"] or socket.gethostname()
        try:
            live = producer.inspector().workers()
        except BrokerUnavailable as exc:
            raise CommandError(f"Redis is unreachable: {exc}") from None
        if opts["worker_id"]:
            mine = [w for w in live if w.id == opts["worker_id"]]
            whose = f"worker {opts['worker_id']}"
        else:
            mine = [w for w in live if w.hostname == hostname]
            whose = f"a worker on {hostname}"
        if not mine:
            raise CommandError(f"no heartbeat from {whose} in the last "
                               f"{tq_settings.HEARTBEAT_TIMEOUT:g} s")
        for worker in mine:
            self.stdout.write(f"{worker.id} {worker.state}, last heartbeat "
                              f"{worker.to_dict()['last_heartbeat']}")
