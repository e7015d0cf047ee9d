#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys

# These start no task and read no cache, so they need no broker.
_NO_BROKER_COMMANDS = {"", "help", "--help", "-h", "version", "--version", "serve", "check", "makemigrations",
                       "migrate", "collectstatic", "add_user", "createsuperuser", "changepassword", "shell",
                       "dbshell", "showmigrations", "sqlmigrate"}
# These only print help or the version (as does any command given -h/--help): no database, no broker.
_HELP_COMMANDS = {"", "help", "--help", "-h", "version", "--version"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    from django.core.management import execute_from_command_line

    command = sys.argv[1] if len(sys.argv) > 1 else ""
    asks_for_help = command in _HELP_COMMANDS or bool({"-h", "--help"} & set(sys.argv[2:]))
    if not asks_for_help:
        _settings_from_the_command_line()
        # Importing the settings starts no database: without DATABASE_URL, every command starts (or
        # attaches to) the embedded PostgreSQL here, and it stops when its last process exits.
        from imagesearch.embedded_db import embedded_postgres_for_this_process

        embedded_postgres_for_this_process()
    if command not in _NO_BROKER_COMMANDS and not asks_for_help:
        # `serve` runs the embedded Redis while it runs; a command run without it starts one for itself.
        from django.conf import settings

        if settings.EMBEDDED_REDIS:
            from imagesearch.embedded_redis import redis_for_this_process

            redis_for_this_process(settings.EMBEDDED_REDIS_DIR)
    execute_from_command_line(sys.argv)


def _settings_from_the_command_line() -> None:
    """Apply --settings and --pythonpath as Django will, before the settings are read here."""
    from django.core.management.base import CommandParser, handle_default_options

    parser = CommandParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--settings")
    parser.add_argument("--pythonpath")
    options, _ = parser.parse_known_args(sys.argv[2:])
    handle_default_options(options)


if __name__ == "__main__":
    main()
