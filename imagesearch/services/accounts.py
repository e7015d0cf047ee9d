"""User accounts the application needs to exist."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model


def admin_ensure(*, username: str = "admin", password: str | None = None, email: str = "") -> str | None:
    """Create a first superuser when there is none.

    Returns the password when this call generated one (to be shown once), else None.
    """
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email=email, password=password)
    return generated
