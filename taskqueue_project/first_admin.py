"""Create the first superuser of a fresh database: ``python -m taskqueue_project.first_admin``.

Reads ``{"username": ..., "password": ...}`` on stdin and prints ``{"created": bool}``.
Nothing is created (or changed) once the database has any user, so a later start, or a
user made with ``createsuperuser``, is left alone. The launcher runs it after migrating.
"""

from __future__ import annotations

import json
import os
import sys


def create_first_admin(username: str, password: str) -> bool:
    """Create a superuser when the database has no user at all; True if one was made."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    users = get_user_model()
    with transaction.atomic():
        if users.objects.exists():
            return False
        users.objects.create_superuser(username, email="", password=password)
    return True


def main() -> int:
    """Entry point for the launcher."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskqueue_project.settings")
    import django

    django.setup()
    wanted = json.loads(sys.stdin.read())
    created = create_first_admin(wanted["username"], wanted["password"])
    print(json.dumps({"created": created}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
