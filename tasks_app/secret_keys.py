"""What makes a key unfit to sign JWTs; shared by the system checks and the project's
settings (this module imports nothing, so settings may import it)."""

from __future__ import annotations

MIN_SECRET_KEY_LENGTH = 32


def weak_secret_key(key: str) -> str | None:
    """Why ``key`` must not sign JWTs, or None if it may."""
    if key.startswith("django-insecure"):
        return "it is Django's insecure placeholder"
    if len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < 5:
        return f"it is shorter than {MIN_SECRET_KEY_LENGTH} characters or too repetitive"
    return None
