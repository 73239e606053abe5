"""Routine successful refreshes leave the audit trail (issue 20): each grant counts its refreshes instead.

The count starts from the "Token refreshed" events the trail already holds for the grant's current connection
(since its connected_at), so that the admin pages show the same number before and after the upgrade. The events
themselves are kept: the trail is never shortened by an upgrade.
"""

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def count_past_refreshes(apps, schema_editor):
    AuthEvent = apps.get_model("alm_accounts", "AuthEvent")
    refreshed = AuthEvent.objects.filter(kind="refreshed", outcome="ok", created_at__gte=OuterRef("connected_at"))
    for model_name, own_events in (("ALMAccount", refreshed.filter(account=OuterRef("pk"), credential__isnull=True)),
                                   ("ALMCredential", refreshed.filter(credential=OuterRef("pk")))):
        count = own_events.order_by().values("outcome").annotate(n=Count("pk")).values("n")
        apps.get_model("alm_accounts", model_name).objects.filter(connected_at__isnull=False).update(
            refresh_count=Coalesce(Subquery(count, output_field=models.IntegerField()), Value(0)))


class Migration(migrations.Migration):

    dependencies = [
        ('alm_accounts', '0007_client_refused_and_alert_order'),
    ]

    operations = [
        migrations.AddField(
            model_name='almaccount',
            name='refresh_count',
            field=models.PositiveIntegerField(default=0, editable=False, verbose_name='Refreshes since connected'),
        ),
        migrations.AddField(
            model_name='almcredential',
            name='refresh_count',
            field=models.PositiveIntegerField(default=0, editable=False, verbose_name='Refreshes since connected'),
        ),
        migrations.RunPython(count_past_refreshes, migrations.RunPython.noop),
    ]
