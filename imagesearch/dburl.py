"""Turn a ``DATABASE_URL`` into Django's ``DATABASES`` entry (no Django import)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit


def database_settings_from_url(url: str) -> dict:
    """Parse ``postgresql://user:pass@host:port/name?opt=value``.

    A ``host`` query parameter (a Unix socket directory, as the embedded server and
    libpq use) overrides the network location; other parameters (``sslmode`` …) are
    passed to psycopg as connection options.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got scheme {parts.scheme!r}")
    options = dict(parse_qsl(parts.query))
    host = options.pop("host", None) or unquote(parts.hostname or "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
