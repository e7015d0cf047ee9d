"""Response hardening that Django 5.2 does not ship: a Content-Security-Policy header, and a 429
for the token endpoint while sign-ins are refused (see ``imagesearch.login_throttle``)."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.authtoken.views import ObtainAuthToken

from imagesearch.login_throttle import client_ip, login_refusal


class ContentSecurityPolicyMiddleware:
    """``CONTENT_SECURITY_POLICY`` on every response, static files and errors included.

    A view whose URL name is in ``CONTENT_SECURITY_POLICY_RELAXED`` gets that policy instead
    (the API docs: the Swagger page of drf-spectacular has an inline script and style).
    A response that already has the header keeps its own. With ``DEBUG``, error pages go
    without: Django's technical 404 and 500 pages are made of inline script and style.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response and not (settings.DEBUG and response.status_code >= 400):
            match = getattr(request, "resolver_match", None)
            relaxed = settings.CONTENT_SECURITY_POLICY_RELAXED.get(match.view_name) if match else None
            policy = relaxed or settings.CONTENT_SECURITY_POLICY
            if policy:
                response["Content-Security-Policy"] = policy
        return response


class LoginThrottleMiddleware:
    """A password sent to a token view (DRF's ``ObtainAuthToken``) past the failure limits: 429.

    The view itself has no throttle (``throttle_classes = ()``); the check is made here so that
    the API's URLs need not change. ``ThrottledModelBackend`` would refuse the password anyway.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        view_class = getattr(view_func, "cls", None)
        if request.method != "POST" or not (isinstance(view_class, type) and issubclass(view_class, ObtainAuthToken)):
            return None
        refusal = login_refusal(username=_posted_username(request), ip=client_ip(request))
        if refusal is None:
            return None
        response = JsonResponse({"detail": refusal}, status=429)
        response["Retry-After"] = str(settings.LOGIN_FAILURES_WINDOW_SECONDS)
        return response


def _posted_username(request: HttpRequest) -> str | None:
    """The user name of a form or JSON body (the token view takes both); None when there is none."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None  # the view answers 400 itself
    else:
        data = request.POST
    username = data.get("username") if isinstance(data, dict) or hasattr(data, "getlist") else None
    return username if isinstance(username, str) else None
