#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kendis_integration.settings")
    from django.core.management import execute_from_command_line

    from kendis_integration.config import load_settings

    # A configuration error (a missing variable, DATABASE_URL=not-a-url, ...) is one line and exit code 78,
    # not Django's traceback. Help and the version still answer without a configuration, as Django's do.
    if sys.argv[1:2] and sys.argv[1] not in ("help", "--help", "-h", "version", "--version"):
        load_settings()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
