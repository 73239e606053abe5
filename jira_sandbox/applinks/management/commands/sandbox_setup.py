"""Bring a sandbox database to life: migrate, then make sure the Jira admin can log in."""

import os

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

ADMIN_USERNAME = "jira-admin"
ADMIN_EMAIL = "jira-admin@sandbox.invalid"


class Command(BaseCommand):
    help = "Migrate the sandbox database and ensure the jira-admin user (password: $SANDBOX_ADMIN_PASSWORD)."

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=options["verbosity"] - 1)
        password = os.environ.get("SANDBOX_ADMIN_PASSWORD", "sandbox-admin")
        user, created = get_user_model().objects.update_or_create(
            username=ADMIN_USERNAME,
            defaults={
                "first_name": "Jira Sandbox",
                "last_name": "Admin",
                "email": ADMIN_EMAIL,
                "is_staff": True,
                "is_superuser": True,
                "is_active": True,
            },
        )
        # Reset every time so the password always matches the current environment.
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {ADMIN_USERNAME} ({user.get_full_name()}).")
