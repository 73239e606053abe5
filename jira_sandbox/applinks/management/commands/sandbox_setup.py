"""Bring a sandbox database to life: migrate, make sure the Jira users can log in, and a project exists.

On the Atlassian Cloud side: the two sites (each with a project DEMO) and the developer console app.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand

from jira_sandbox import users
from jira_sandbox.cloud import setup as cloud_setup
from jira_sandbox.issues.models import Project

# Kept importable from here: sandbox_create_link and older scripts use it.
ADMIN_USERNAME = users.ADMIN_USERNAME
DEMO_PROJECT_KEY = "DEMO"


class Command(BaseCommand):
    help = (
        "Migrate the sandbox database, ensure the users jira-admin ($SANDBOX_ADMIN_PASSWORD) and "
        "jira-user2 ($SANDBOX_USER2_PASSWORD), and the project DEMO; on the Atlassian Cloud side the sites "
        "kendis-sandbox and kendis-other and the app $SANDBOX_CLOUD_CLIENT_ID."
    )

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=options["verbosity"] - 1)
        for sandbox_user in users.SANDBOX_USERS:
            user, created = users.ensure(sandbox_user)
            verb = "Created" if created else "Updated"
            self.stdout.write(f"{verb} {user.username} ({user.get_full_name()}, {sandbox_user.role}).")
        Project.objects.get_or_create(key=DEMO_PROJECT_KEY, defaults={"name": "Demo"})
        cloud_setup.ensure_sites()
        app, created = cloud_setup.ensure_app()
        verb = "Registered" if created else "Updated"
        self.stdout.write(f"{verb} the Atlassian Cloud app {app.name} ({app.client_id}, callback {app.callback_url}).")
