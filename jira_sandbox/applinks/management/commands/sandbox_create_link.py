"""Create an incoming application link without the browser, for tests and scripts.

Prints one JSON object with client_id and client_secret: the only moment the
plaintext secret exists, since DOT stores a hash of it.
"""

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jira_sandbox.applinks.models import IncomingLink

from .sandbox_setup import ADMIN_USERNAME


class Command(BaseCommand):
    help = "Create an incoming application link and print its credentials as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--redirect-url", required=True)
        parser.add_argument("--permission", default="ADMIN", choices=IncomingLink.Permission.values)

    def handle(self, *args, **options):
        link = IncomingLink(
            name=options["name"],
            redirect_uris=options["redirect_url"],
            permission=options["permission"],
            user=get_user_model().objects.filter(username=ADMIN_USERNAME).first(),
        )
        try:
            link.full_clean()
        except ValidationError as error:
            raise CommandError(f"Invalid link: {error.message_dict}") from error
        plaintext_secret = link.client_secret  # hashed by DOT during save()
        link.save()
        self.stdout.write(
            json.dumps(
                {
                    "client_id": link.client_id,
                    "client_secret": plaintext_secret,
                    "name": link.name,
                    "redirect_url": link.redirect_url,
                    "permission": link.permission,
                }
            )
        )
