#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys

# These start no task and read no cache, so they need no broker.
_NO_BROKER_COMMANDS = {"", "help", "--help", "-h", "version", "--version", "serve", "check", "makemigrations",
                       "migrate", "collectstatic", "add_user", "createsuperuser", "changepassword", "shell",
                       "dbshell", "showmigrations", "sqlmigrate"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    from django.core.management import execute_from_command_line

    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in _NO_BROKER_COMMANDS:
        # `serve` runs the embedded Redis while it runs; a command run without it starts one for itself.
        from django.conf import settings

        if settings.EMBEDDED_REDIS:
            from imagesearch.embedded_redis import redis_for_this_process

            redis_for_this_process(settings.EMBEDDED_REDIS_DIR)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
