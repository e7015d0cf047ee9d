"""Roles: the groups exist after migrate, add_user gives them, and each role reaches only its pages."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from imagesearch.services.accounts import ROLES, UNKNOWN_ROLE, roles_ensure, user_roles_set
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_migrate_creates_the_role_groups_with_their_permissions():
    assert set(Group.objects.filter(name__in=ROLES).values_list("name", flat=True)) == set(ROLES)
    labeler = set(Group.objects.get(name="labeler").permissions.values_list("codename", flat=True))
    assert labeler == {"label"}
    admin = set(Group.objects.get(name="admin").permissions.values_list("codename", flat=True))
    assert {"label", "search", "manage_labeling", "manage_models", "delete_image"} <= admin
    roles_ensure()  # idempotent
    assert Group.objects.filter(name__in=ROLES).count() == 3


def test_add_user_creates_a_user_with_roles_and_changes_them(capsys):
    call_command("add_user", "lena", "--role", "labeler", "--password", "secret-pw")
    lena = get_user_model().objects.get(username="lena")
    assert lena.check_password("secret-pw") and lena.has_perm("labeling.label")
    assert not lena.has_perm("imagesearch.search") and not lena.is_staff
    call_command("add_user", "lena", "--role", "admin")
    lena = get_user_model().objects.get(username="lena")
    assert lena.is_staff and lena.has_perm("ranking.manage_models")
    assert list(lena.groups.values_list("name", flat=True)) == ["admin"]
    call_command("add_user", "mo", "--role", "analyst")
    assert "Password (shown once):" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("add_user", "lena", "--role", "admin", "--password", "other")


def test_unknown_roles_are_refused():
    with pytest.raises(ValueError, match=UNKNOWN_ROLE.format(role="boss")):
        user_roles_set(user=UserFactory(), roles=["boss"])


@pytest.mark.parametrize("roles, allowed, refused", [
    (["labeler"], ["/label/"], ["/images/", "/search/", "/api/images/", "/api/labeling/quality/"]),
    (["analyst"], ["/images/", "/search/", "/api/images/"],
     ["/label/", "/api/labeling/stats/", "/api/labeling/quality/"]),
    (["admin"], ["/images/", "/search/", "/label/", "/api/labeling/quality/", "/admin/"], []),
])
def test_each_role_reaches_its_pages_only(client, criterion, roles, allowed, refused):
    client.force_login(UserFactory(roles=roles))
    for url in allowed:
        assert client.get(url).status_code == 200, url
    for url in refused:
        assert client.get(url).status_code == 403, url
