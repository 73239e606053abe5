"""Create a Jira project without the browser, so a test can count on its own issue keys (KEY-1, KEY-2, ...)."""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jira_sandbox.issues.models import Project


class Command(BaseCommand):
    help = "Create a project and print it as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--key", required=True, help="2 to 10 upper-case letters or digits, first a letter.")
        parser.add_argument("--name", required=True)

    def handle(self, *args, **options):
        project = Project(key=options["key"], name=options["name"])
        try:
            project.full_clean()
        except ValidationError as error:
            raise CommandError(f"Invalid project: {error.message_dict}") from error
        project.save()
        self.stdout.write(json.dumps({"key": project.key, "name": project.name}))
