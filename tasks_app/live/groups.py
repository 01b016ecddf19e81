"""The Channels groups live events travel in, and the Redis channels they map to.

Names only (no publishing, no settings object), so ``tasks_app.conf`` can hand the
task group's channel to the core's Lua scripts without importing the publisher.
"""

from __future__ import annotations

from django.conf import settings

GROUP = "taskqueue.events"  # worker.* and queue.depth, from Python publishers
TASK_GROUP = "taskqueue.tasks"  # task.*, published by the Lua scripts


def group_channel(group: str = TASK_GROUP) -> str:
    """The Redis pub/sub channel the layer uses for a group (channels-redis pub/sub naming).

    The queue's Lua scripts publish submitted and cancelled events straight to it,
    in the same atomic step as the change, so no later event of a task can overtake them.
    """
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "asgi")
    return f"{prefix}__group__{group}"


def session_group(digest: str) -> str:
    """The group of the ``/ws`` sockets opened with one Django session (by its digest)."""
    return f"taskqueue.session.{digest}"
