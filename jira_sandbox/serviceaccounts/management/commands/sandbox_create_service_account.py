"""Create a service account without the browser, for tests and scripts: Data Center's, or with --cloud Atlassian's.

Prints one JSON object with client_id and client_secret: the only moment the plaintext secret exists.
"""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from jira_sandbox import scopes
from jira_sandbox.cloud import scopes as cloud_scopes
from jira_sandbox.cloud import service_accounts as cloud_accounts

from ... import accounts


class Command(BaseCommand):
    help = (
        "Create a service account and print its OAuth 2.0 client credentials as JSON. Data Center: --scope READ "
        "or WRITE. Atlassian Cloud (--cloud): --scopes (classic Jira scopes) and --site (repeatable)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="The service account's display name.")
        parser.add_argument("--username", default="", help="Data Center: its user name (default: from the name).")
        parser.add_argument("--scope", default="WRITE", choices=scopes.SERVICE_ACCOUNT_LEVELS,
                            help="Data Center: the highest scope its credential may ask for (default WRITE).")
        parser.add_argument("--cloud", action="store_true", help="An Atlassian Cloud service account instead.")
        parser.add_argument("--scopes", default=" ".join(cloud_accounts.DEFAULT_SCOPES),
                            help="Cloud: the credential's scopes, space-separated, among "
                                 f"{' '.join(cloud_scopes.SERVICE_ACCOUNT_SCOPES)}.")
        parser.add_argument("--site", action="append", dest="sites",
                            help="Cloud: a site name it has Jira access to (repeatable; default kendis-sandbox).")

    def handle(self, *args, **options):
        try:
            if options["cloud"]:
                answer = self._cloud(options)
            else:
                account, secret = accounts.create(
                    name=options["name"], username=options["username"], scope=options["scope"]
                )
                answer = {
                    "client_id": account.credential.client_id,
                    "client_secret": secret,
                    "username": account.user.username,
                    "display_name": str(account),
                    "scope": account.credential.permission,
                }
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(json.dumps(answer))

    def _cloud(self, options):
        account, secret = cloud_accounts.create(
            name=options["name"], scope_list=options["scopes"].split(), site_names=options["sites"] or None
        )
        return {
            "client_id": account.client_id,
            "client_secret": secret,
            "account_id": account.account_id,
            "email": account.user.email,
            "display_name": account.name,
            "scopes": account.scopes,
            "sites": [site.name for site in account.sites.order_by("name")],
        }
