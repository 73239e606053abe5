#!/usr/bin/env python
"""Command-line entry point of the Jira sandbox: `python jira_sandbox/manage.py ...`.

The settings module is forced, not defaulted: the main project's
DJANGO_SETTINGS_MODULE (set by pytest-django, a shell, or an .env loader) must
never leak into the sandbox, which would then run against the wrong database.
"""

import os
import sys
from pathlib import Path


def main():
    # Run from anywhere: put the repository root (not this folder) on the path so
    # the sandbox is only importable as the `jira_sandbox` package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    os.environ["DJANGO_SETTINGS_MODULE"] = "jira_sandbox.settings"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
