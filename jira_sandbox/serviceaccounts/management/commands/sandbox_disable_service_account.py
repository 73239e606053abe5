"""Disable a service account (Data Center's or Atlassian Cloud's) by its Client ID, or enable it again with --enable.

Disabled, its token requests get 401 invalid_client and the tokens it already holds stop working.
"""

from django.core.management.base import BaseCommand, CommandError

from jira_sandbox.cloud import service_accounts as cloud_accounts
from jira_sandbox.cloud.models import CloudServiceAccount

from ... import accounts
from ...models import ServiceAccount


class Command(BaseCommand):
    help = "Disable a service account by its Client ID (either platform); --enable turns it back on."

    def add_arguments(self, parser):
        parser.add_argument("--client-id", required=True)
        parser.add_argument("--enable", action="store_true", help="Enable it again instead.")

    def handle(self, *args, **options):
        client_id, enabled = options["client_id"], options["enable"]
        data_center = ServiceAccount.objects.select_related("user").filter(credential__client_id=client_id).first()
        if data_center is not None:
            accounts.set_enabled(data_center, enabled)
            name = str(data_center)
        else:
            cloud = CloudServiceAccount.objects.filter(client_id=client_id).first()
            if cloud is None:
                raise CommandError(f"No service account has the Client ID {client_id}.")
            cloud_accounts.set_enabled(cloud, enabled)
            name = cloud.name
        self.stdout.write(f"{'Enabled' if enabled else 'Disabled'} the service account {name} ({client_id}).")
