"""Issue 21: when each grant was last used (idle grants are only kept alive), and a day of refreshes per grant.

Nobody knows yet which grants the product uses: every connected grant counts as used at the upgrade, so each stays
fresh as before for REFRESH_ACTIVE_WITHIN_HOURS; those the product does not ask for meanwhile then go idle.
"""

from django.db import migrations, models
from django.utils import timezone


def used_at_upgrade(apps, schema_editor):
    now = timezone.now()
    for model_name in ("ALMAccount", "ALMCredential"):
        apps.get_model("alm_accounts", model_name).objects.filter(refresh_token__isnull=False).update(last_used_at=now)


class Migration(migrations.Migration):

    dependencies = [
        ('alm_accounts', '0009_service_accounts'),
    ]

    operations = [
        migrations.AddField(
            model_name='almaccount',
            name='last_used_at',
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name='Last used'),
        ),
        migrations.AddField(
            model_name='almcredential',
            name='last_used_at',
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name='Last used'),
        ),
        migrations.CreateModel(
            name='RefreshDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('grant_kind', models.CharField(max_length=20)),
                ('grant_id', models.BigIntegerField()),
                ('day', models.DateField()),
                ('successes', models.PositiveIntegerField(default=0)),
                ('failures', models.PositiveIntegerField(default=0)),
                ('recoveries', models.PositiveIntegerField(default=0)),
                ('keepalives', models.PositiveIntegerField(default=0)),
                ('latency_ms_total', models.BigIntegerField(default=0)),
                ('latency_ms_max', models.PositiveIntegerField(default=0)),
            ],
            options={
                'verbose_name': 'refresh day',
                'constraints': [models.UniqueConstraint(fields=('grant_kind', 'grant_id', 'day'), name='alm_refresh_day_once')],
                'indexes': [models.Index(fields=['day'], name='alm_refresh_day_age')],
            },
        ),
        migrations.RunPython(used_at_upgrade, migrations.RunPython.noop),
    ]
