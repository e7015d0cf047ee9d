"""Limits on wrong passwords, per user name and per client address, kept in Django's cache.

Every password check (the login page, ``/api/auth/token/``, the admin's login) goes
through ``authenticate()`` and so through ``ThrottledModelBackend``, which counts the
failures and, past a limit, refuses to check any more. The login page's form and
``middleware.LoginThrottleMiddleware`` (for the token endpoint) ask first, so that they
can say why: a form error, a 429.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import caches
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest

TOO_MANY_FAILURES = "Too many failed sign-ins. Try again in {minutes} minute{s}."


def _counters(*, username: str | None, ip: str | None) -> list[tuple[str, int]]:
    """The cache keys that count failures of this sign-in, each with its limit."""
    counters = []
    if username:
        # hashed: a user name may hold what a cache key may not (memcached), and is not kept in clear
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()
        counters.append((f"login-failures:user:{digest}", settings.LOGIN_FAILURES_PER_USER))
    if ip:
        counters.append((f"login-failures:ip:{ip}", settings.LOGIN_FAILURES_PER_IP))
    return counters


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address; behind the TLS proxy (``DJANGO_SECURE``), the one the proxy appended last
    to X-Forwarded-For, or every client would share the proxy's address."""
    if request is None:
        return None
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.SECURE_PROXY_SSL_HEADER and forwarded:
        return forwarded.rsplit(",", 1)[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None


def login_refusal(*, username: str | None, ip: str | None) -> str | None:
    """Why a sign-in by ``username`` from ``ip`` is refused now, or None when it may be tried."""
    cache = caches["default"]
    for key, limit in _counters(username=username, ip=ip):
        if (cache.get(key) or 0) >= limit:
            minutes = max(1, round(settings.LOGIN_FAILURES_WINDOW_SECONDS / 60))
            return TOO_MANY_FAILURES.format(minutes=minutes, s="s" if minutes != 1 else "")
    return None


def login_failure_record(*, username: str | None, ip: str | None) -> None:
    """Count one wrong password; the count starts at the first failure and lasts the window."""
    cache = caches["default"]
    for key, _limit in _counters(username=username, ip=ip):
        cache.add(key, 0, timeout=settings.LOGIN_FAILURES_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, timeout=settings.LOGIN_FAILURES_WINDOW_SECONDS)


def login_failures_reset(*, username: str | None, ip: str | None) -> None:
    caches["default"].delete_many([key for key, _limit in _counters(username=username, ip=ip)])


class LoginThrottled(PermissionDenied):
    """Raised by the backend: ``authenticate()`` then stops without trying the other backends."""


class ThrottledModelBackend(ModelBackend):
    """Django's user and password check, refused past the failure limits and counting the failures."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        username = username if username is not None else kwargs.get(get_user_model().USERNAME_FIELD)
        ip = client_ip(request)
        refusal = login_refusal(username=username, ip=ip)
        if refusal:
            raise LoginThrottled(refusal)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and password is not None:
            login_failure_record(username=username, ip=ip)
        return user


class ThrottledAuthenticationForm(AuthenticationForm):
    """The login page's form: says that sign-ins are refused for now rather than that the password is wrong."""

    error_messages = {**AuthenticationForm.error_messages,
                      "invalid_login": "Your user name and password didn't match. Please try again."}

    def clean(self):
        refusal = login_refusal(username=self.cleaned_data.get("username"), ip=client_ip(self.request))
        if refusal:
            raise ValidationError(refusal, code="throttled")
        return super().clean()
