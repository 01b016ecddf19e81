"""Run ``manage.py`` or daphne with the reliability handlers registered.

    python reliability/run.py manage runworker_tq -c 8
    python reliability/run.py daphne -b 127.0.0.1 -p 8000 taskqueue_project.asgi:application

``TASKQUEUE_HANDLER_MODULE`` names a module imported from every *installed app*
(``<app>.handlers``), and ``reliability`` is not an app, so the handlers are
imported here before Django starts; slot processes inherit them through fork.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")

import reliability.handlers  # noqa: E402,F401  (registers rel.sleep, rel.poison)


def main() -> None:
    tool, args = sys.argv[1], sys.argv[2:]
    if tool == "manage":
        from django.core.management import execute_from_command_line

        execute_from_command_line(["manage.py", *args])
    elif tool == "daphne":
        from daphne.cli import CommandLineInterface

        CommandLineInterface().run(args)
    else:
        raise SystemExit(f"unknown tool {tool!r}: use manage or daphne")


if __name__ == "__main__":
    main()
