"""Counts of token requests served, for tests and benchmarks.

Kept in process memory: the sandbox is a single runserver process and the
numbers are only meaningful for the lifetime of one run.
"""

import threading
from collections import defaultdict

from django.http import JsonResponse

_lock = threading.Lock()
_by_grant_type = defaultdict(lambda: defaultdict(int))


def record_token_request(grant_type, status):
    with _lock:
        _by_grant_type[grant_type or "(none)"][str(status)] += 1


def snapshot():
    with _lock:
        by_grant_type = {grant: dict(statuses) for grant, statuses in _by_grant_type.items()}
    return {
        "token_requests": sum(sum(s.values()) for s in by_grant_type.values()),
        "token_grants": sum(s.get("200", 0) for s in by_grant_type.values()),
        "by_grant_type": by_grant_type,
    }


def stats_view(request):
    """GET /sandbox/stats: {"token_requests", "token_grants", "by_grant_type": {grant: {status: n}}}."""
    return JsonResponse(snapshot())
