"""API permissions shared by the apps: every endpoint names the Django permission it needs."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class HasModelPermission(BasePermission):
    """The user holds the Django permission named by the view's ``required_permission``."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(view.required_permission))


class HasAnyRole(BasePermission):
    """A labeler, analyst or admin: for what every role needs, such as the API schema."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated
                    and (user.has_perm("labeling.label") or user.has_perm("imagesearch.search")))
