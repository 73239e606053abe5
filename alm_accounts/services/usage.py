"""Which grants the product uses: each grant's last_used_at, written coarsely and off the request's critical path.

valid_access_token (every token the product gets: jira_request for a person or the account, grant_request) calls
`note_used`. In use within REFRESH_ACTIVE_WITHIN_HOURS, a grant is kept fresh; idle, it is only kept alive
(selectors.due). So the time need not be exact, and is not worth a write per call:

- **At most one write per grant every RECORD_EVERY.** A grant whose last_used_at (as read by the caller) is that
  recent costs nothing; each process also remembers which grants it wrote lately. The write itself is one
  conditional UPDATE (`... WHERE pk = %s AND (last_used_at IS NULL OR last_used_at < now - RECORD_EVERY)`): many
  processes noting the same grant change its row once.
- **Never on the request's critical path.** Inside a web request the grant is only put on a list; the UPDATE runs
  at request_finished, which the WSGI server sends once the response has gone out (Django calls it from the
  response's close()). Outside a request (a job, a command) there is no response to delay: written at once.
- **Never a failure.** A write that fails is logged (never a token) and forgotten: the next use writes again.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.core.signals import request_finished, request_started
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from ..kinds import KINDS
from ..models import Grant

log = logging.getLogger("alm_accounts.services")

RECORD_EVERY = timedelta(minutes=5)
# A process forgets which grants it wrote lately beyond this many (then it may write one again early: harmless).
REMEMBERED_AT_MOST = 10_000

_local = threading.local()  # .pending: the grants noted during this thread's request (None outside a request)
_written: dict[tuple[str, int], datetime] = {}  # (kind, pk) -> when this process last wrote it
_written_lock = threading.Lock()


def note_used(grant: Grant, *, at_once: bool = False) -> None:
    """The product is about to use `grant`'s token: record it (see the module docstring). `at_once`: even inside a
    request (a refresh, a call to Jira, follows anyway)."""
    now = timezone.now()
    if grant.last_used_at is not None and grant.last_used_at > now - RECORD_EVERY:
        return
    ref = (grant.grant_kind, grant.pk)
    with _written_lock:
        written = _written.get(ref)
    if written is not None and now - RECORD_EVERY < written <= now:
        return
    grant.last_used_at = now  # this instance says so from now on: its next calls cost nothing
    pending = getattr(_local, "pending", None)
    if pending is not None and not at_once:
        pending.add(ref)
    else:
        write_used({ref}, now=now)


def write_used(refs, *, now=None) -> int:
    """Set last_used_at of the grants `refs` ((kind, pk) pairs) to `now` where it is older than RECORD_EVERY;
    returns how many rows changed. One UPDATE per grant; a failure is logged, never raised."""
    now = now or timezone.now()
    changed = 0
    for kind, pk in refs:
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - RECORD_EVERY)
        try:
            changed += KINDS[kind].model.objects.filter(stale, pk=pk).update(last_used_at=now)
        except DatabaseError as exc:
            log.warning("When %s %s was last used could not be recorded (%s); the next use records it.",
                        KINDS[kind].label, pk, type(exc).__name__)
            continue
        with _written_lock:
            if len(_written) >= REMEMBERED_AT_MOST:
                _written.clear()
            _written[(kind, pk)] = now
    return changed


def forget_written() -> None:
    """Forget which grants this process wrote lately (tests that move the clock)."""
    with _written_lock:
        _written.clear()


def _request_started(**kwargs) -> None:
    _local.pending = set()


def _request_finished(**kwargs) -> None:
    # After the response was sent (WSGI: its close()); a streamed response's close() comes after its last chunk.
    pending, _local.pending = getattr(_local, "pending", None), None
    if pending:
        write_used(pending)


request_started.connect(_request_started, dispatch_uid="alm_accounts.usage.request_started")
request_finished.connect(_request_finished, dispatch_uid="alm_accounts.usage.request_finished")
