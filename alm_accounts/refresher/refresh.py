"""One grant's refresh, as the refresher runs it: in its main thread, a thread of its pool or a worker process.

Each grant is refreshed under its row lock; a grant locked by another runner
is skipped (skip_locked) and the expiry is checked again under the lock
(services.refresh_grant). An error of one grant is its result, never the
run's.
"""

from __future__ import annotations

import dataclasses

from django.db import reset_queries

from alm_accounts import services
from alm_accounts.kinds import ReadAlong
from alm_accounts.services import GrantRef, RefreshOutcome
from alm_accounts.services.common import protect_session

ACTOR = "manage.py refresh_tokens"  # who the audit trail says refreshed


def refresh_one(kind: str, pk: int, name: str, due_within, read_along: ReadAlong | None = None
                ) -> services.RefreshResult:
    """One grant, in a thread of the pool (or of a worker process, refresher.processes)."""
    try:
        # This thread's connection runs nothing but refreshes: their settings once per session, not per refresh.
        protect_session()
        return refresh_grant_once(kind, pk, name, due_within, read_along)
    finally:
        reset_queries()  # under DEBUG each thread's connection would keep its last 9000 queries


def refresh_grant_once(kind: str, pk: int, name: str, due_within, read_along: ReadAlong | None = None
                       ) -> services.RefreshResult:
    """`read_along`: the rows its refresh reads along, read with its batch (selection.ReadAlongBatches)."""
    try:
        # The run writes the health timeline of its refreshes, a hundred at a time (refresher.timeline).
        result = services.refresh_grant(grant=GrantRef(kind, pk), actor=ACTOR, due_within=due_within,
                                        skip_locked=True, read_along=read_along, timeline_kept_by_caller=True)
    except Exception as exc:  # noqa: BLE001 - one broken grant must not stop the others
        return services.RefreshResult(pk, name, RefreshOutcome.FAILED, f"unexpected error ({type(exc).__name__})",
                                      kind=kind)
    if result.outcome is RefreshOutcome.BUSY:
        # Locked elsewhere, so not read: the line names the grant as listed, not by its bare id.
        result = dataclasses.replace(result, account_name=name)
    return result
