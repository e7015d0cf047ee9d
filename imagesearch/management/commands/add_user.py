"""python manage.py add_user NAME --role labeler [--role analyst] [--password PW]: a user with roles."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from imagesearch.services.accounts import ROLES, user_create, user_roles_set


class Command(BaseCommand):
    help = "Create a user (or change an existing user's roles): labeler, analyst, admin."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", action="append", choices=ROLES, required=True, dest="roles",
                            help="repeat for several roles")
        parser.add_argument("--password", help="default: a generated one, printed once")

    def handle(self, *args, username: str, roles: list[str], password: str | None, **options):
        existing = get_user_model().objects.filter(username=username).first()
        if existing:
            if password:
                raise CommandError(f"{username} exists; change passwords in the admin site or with changepassword.")
            user_roles_set(user=existing, roles=roles)
            self.stdout.write(f"{username} now has the roles: {', '.join(roles)}")
            return
        _, generated = user_create(username=username, password=password, roles=roles)
        self.stdout.write(f"Created {username} with the roles: {', '.join(roles)}")
        if generated:
            self.stdout.write(f"Password (shown once): {generated}")
