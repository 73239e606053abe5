"""Each grant's refreshes, one row per day (models.RefreshDay): what its health timeline draws.

Routine successes are not in the audit trail (only counted on the grant), so the timeline has its own light
record: every refresh that reached the point of asking Jira gives an Entry (its result carries it,
RefreshResult.timeline), added to its grant's row of the day (UTC) by an INSERT ... ON CONFLICT DO UPDATE that adds
to the counts (PostgreSQL, and SQLite since 3.24). A refresh asked for by the product or an admin writes its own
entry as soon as its transaction has committed; the refresher collects its runs' entries and writes them a
hundred at a time (refresher.timeline.Timeline), so that a refresh in its threads is two statements, the
grant's locked read and its UPDATE. Rows older than KEEP_DAYS are deleted by the refresher after each run
(`prune`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from django.db import DatabaseError, connection
from django.utils import timezone

from ..models import Grant, RefreshDay

log = logging.getLogger(__name__)

KEEP_DAYS = 56  # eight weeks: the timeline shows the last TIMELINE_DAYS of them
TIMELINE_DAYS = 42
COUNTS = ("successes", "failures", "recoveries", "keepalives", "latency_ms_total")
# Entries the refresher writes at a time (refresher.timeline): one round trip each hundred refreshes.
ENTRIES_PER_WRITE = 100


@dataclass(frozen=True)
class Entry:
    """One refresh of one grant, as its row of the day counts it (two entries of a grant and day add up)."""

    grant_kind: str
    grant_id: int
    day: date
    successes: int
    failures: int
    recoveries: int
    keepalives: int
    latency_ms_total: int
    latency_ms_max: int

    @property
    def key(self) -> tuple[str, int, date]:
        return self.grant_kind, self.grant_id, self.day

    def plus(self, other: Entry) -> Entry:
        return Entry(*self.key, *(getattr(self, c) + getattr(other, c) for c in COUNTS),
                     max(self.latency_ms_max, other.latency_ms_max))


def entry(grant: Grant, *, ok: bool, recovered: bool = False, kept_alive: bool = False,
          latency: float | None = None, now=None) -> Entry:
    """One refresh of `grant`. `latency`: seconds Jira took (None: Jira was not asked, e.g. a secret that cannot
    be decrypted)."""
    day = (now or timezone.now()).date()
    millis = 0 if latency is None else max(0, round(latency * 1000))
    return Entry(grant.grant_kind, grant.pk, day, int(ok), int(not ok), int(ok and recovered),
                 int(ok and kept_alive), millis, millis)


def _upsert_sql() -> str:
    table = connection.ops.quote_name(RefreshDay._meta.db_table)
    columns = ("grant_kind", "grant_id", "day", *COUNTS, "latency_ms_max")
    added = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COUNTS)
    longest = (f"latency_ms_max = CASE WHEN excluded.latency_ms_max > {table}.latency_ms_max "
               f"THEN excluded.latency_ms_max ELSE {table}.latency_ms_max END")
    # Only our own table and column names are put in the text; every value is a parameter.
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "  # noqa: S608
            f"ON CONFLICT (grant_kind, grant_id, day) DO UPDATE SET {added}, {longest}")


def write(entries) -> None:
    """Add `entries` to their grants' rows of the day, in one executemany of the one-row upsert: on PostgreSQL
    one round trip for all of them (psycopg pipelines it; the statement, short and the same each time, is
    prepared once and its parameters placed without parsing it again, where one long VALUES list would be parsed
    for every write). Two entries of the same grant and day are added together first."""
    added: dict[tuple[str, int, date], Entry] = {}
    for one in entries:
        before = added.get(one.key)
        added[one.key] = one if before is None else before.plus(one)
    if not added:
        return
    rows = [(one.grant_kind, one.grant_id, one.day, *(getattr(one, c) for c in COUNTS), one.latency_ms_max)
            for one in added.values()]
    with connection.cursor() as cursor:
        if len(rows) == 1:  # a refresh of the product's or an admin's: one plain statement
            cursor.execute(_upsert_sql(), rows[0])
        else:
            cursor.executemany(_upsert_sql(), rows)


def write_or_log(entries) -> bool:
    """write(), for a caller whose refresh is done whatever happens here: a database that refuses the timeline
    costs its entries (logged, by class only), never the refresh. False when refused."""
    entries = list(entries)
    try:
        write(entries)
    except DatabaseError as exc:
        log.warning("The health timeline of %s refresh(es) could not be written (%s).", len(entries),
                    type(exc).__name__)
        return False
    return True


def prune(*, today: date | None = None) -> int:
    """Delete the rows older than KEEP_DAYS: one DELETE."""
    today = today or timezone.now().date()
    deleted, _ = RefreshDay.objects.filter(day__lt=today - timedelta(days=KEEP_DAYS)).delete()
    return deleted
