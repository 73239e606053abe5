"""Make sure an admin user exists (used by `make run` on a fresh machine).

Name from DJANGO_SUPERUSER_USERNAME (default "admin"); password from
DJANGO_SUPERUSER_PASSWORD, else generated and printed once. An existing user
is left exactly as it is, so running it again is safe.
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin user if it does not exist yet."

    def handle(self, *args, **options):
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip() or "admin"
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin user '{username}' already exists (password unchanged).")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            self.stdout.write(f"Created admin user '{username}' with the password from DJANGO_SUPERUSER_PASSWORD.")
        else:
            self.stdout.write(self.style.WARNING(
                f"Created admin user '{username}' with password: {password}\n"
                "It is shown only this once: write it down, or change it with "
                f"'python manage.py changepassword {username}'."
            ))
