"""Issue 21, part 3: the rate-limit counters of /metrics kept in the database (one row per provider, signal and
reason), so that every process that calls Jira adds to the same numbers and every process scraped shows them.

A new table only: nothing to convert (the counters were in each process's memory, and start from 0).
"""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('alm_accounts', '0010_grant_last_used'),
    ]

    operations = [
        migrations.CreateModel(
            name='RateLimitCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('provider', models.CharField(help_text="datacenter or cloud (the metrics' provider label).", max_length=20)),
                ('signal', models.CharField(choices=[('rate_limited', 'Rate limited (HTTP 429)'), ('near_limit', 'Near the limit')], max_length=20)),
                ('reason', models.CharField(blank=True, help_text='The limit Jira named (RateLimit-Reason), other or unspecified; empty for near-limit signals.', max_length=60)),
                ('count', models.PositiveBigIntegerField(default=0)),
                ('last_seen_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('provider', 'signal', 'reason'), name='alm_rate_limit_count_unique')],
            },
        ),
    ]
