"""User accounts and the three roles: labeler, analyst, admin.

A role is a Django group holding permissions; pages and API endpoints check the
permissions, never the group names, so a deployment may regroup them.
"""

from __future__ import annotations

import secrets

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

LABELER, ANALYST, ADMIN = "labeler", "analyst", "admin"
ROLES = (LABELER, ANALYST, ADMIN)
UNKNOWN_ROLE = "Unknown role {role!r}: choose from labeler, analyst, admin."

# admins also get every model permission of these apps (for the Django admin)
_ADMIN_APPS = ("imagesearch", "labeling", "ranking")
ROLE_PERMISSIONS = {
    LABELER: ["labeling.label"],
    # add_image: "add to library" from search; add_document: upload documents to import
    ANALYST: ["imagesearch.search", "imagesearch.add_image", "imagesearch.add_document"],
    ADMIN: ["labeling.label", "imagesearch.search", "labeling.manage_labeling", "ranking.manage_models"],
}


def roles_ensure() -> None:
    """Create the role groups with their permissions (idempotent; run after every migrate)."""
    for app_label in _ADMIN_APPS:  # the permissions must exist first, whatever the signal order
        create_permissions(apps.get_app_config(app_label), verbosity=0)
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = [_permission(name) for name in names]
        if role == ADMIN:
            permissions += Permission.objects.filter(content_type__app_label__in=_ADMIN_APPS)
        group.permissions.add(*permissions)


def _permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def user_roles_set(*, user, roles: list[str]) -> None:
    """Give the user exactly these roles; admins may also use the Django admin site."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(UNKNOWN_ROLE.format(role=unknown[0]))
    roles_ensure()
    user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(name__in=roles))
    user.groups.add(*Group.objects.filter(name__in=roles))
    user.is_staff = user.is_superuser or ADMIN in roles
    user.save(update_fields=["is_staff"])


def user_create(*, username: str, password: str | None = None, roles: list[str]) -> tuple[object, str | None]:
    """Create a user with roles; returns (user, generated password or None)."""
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    user = get_user_model().objects.create_user(username=username, password=password)
    user_roles_set(user=user, roles=roles)
    return user, generated


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
