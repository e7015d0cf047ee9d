"""API permissions shared by the apps: every endpoint names the Django permission it needs."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class HasModelPermission(BasePermission):
    """The user holds the Django permission named by the view's ``required_permission``."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(view.required_permission))
