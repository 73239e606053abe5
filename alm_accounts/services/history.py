"""Each grant's refreshes, one row per day (models.RefreshDay): what its health timeline draws.

Routine successes are not in the audit trail (only counted on the grant), so the timeline has its own light
record: every refresh that reached the point of asking Jira adds itself to its grant's row of the day (UTC) in ONE
statement, an INSERT ... ON CONFLICT DO UPDATE that adds to the counts (PostgreSQL, and SQLite since 3.24), inside
the refresh's own transaction. Rows older than KEEP_DAYS are deleted by the refresher after each run (`prune`).
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db import connection
from django.utils import timezone

from ..models import Grant, RefreshDay

KEEP_DAYS = 56  # eight weeks: the timeline shows the last TIMELINE_DAYS of them
TIMELINE_DAYS = 42
COUNTS = ("successes", "failures", "recoveries", "keepalives", "latency_ms_total")


def _upsert_sql() -> str:
    table = connection.ops.quote_name(RefreshDay._meta.db_table)
    columns = ("grant_kind", "grant_id", "day", *COUNTS, "latency_ms_max")
    added = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COUNTS)
    longest = (f"latency_ms_max = CASE WHEN excluded.latency_ms_max > {table}.latency_ms_max "
               f"THEN excluded.latency_ms_max ELSE {table}.latency_ms_max END")
    # Only our own table and column names are put in the text; every value is a parameter.
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "  # noqa: S608
            f"ON CONFLICT (grant_kind, grant_id, day) DO UPDATE SET {added}, {longest}")


def record(grant: Grant, *, ok: bool, recovered: bool = False, kept_alive: bool = False,
           latency: float | None = None, now=None) -> None:
    """Add one refresh of `grant` to its row of the day: one statement. `latency`: seconds Jira took (None: Jira
    was not asked, e.g. a secret that cannot be decrypted)."""
    day = (now or timezone.now()).date()
    millis = 0 if latency is None else max(0, round(latency * 1000))
    values = [grant.grant_kind, grant.pk, day, int(ok), int(not ok), int(ok and recovered), int(ok and kept_alive),
              millis, millis]
    with connection.cursor() as cursor:
        cursor.execute(_upsert_sql(), values)


def prune(*, today: date | None = None) -> int:
    """Delete the rows older than KEEP_DAYS: one DELETE."""
    today = today or timezone.now().date()
    deleted, _ = RefreshDay.objects.filter(day__lt=today - timedelta(days=KEEP_DAYS)).delete()
    return deleted
