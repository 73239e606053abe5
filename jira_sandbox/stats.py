"""Counts of token requests served, for tests and benchmarks: Data Center's, and Atlassian Cloud's apart.

Kept in process memory: the sandbox is a single runserver process and the
numbers are only meaningful for the lifetime of one run.
"""

import threading
from collections import defaultdict

from django.http import JsonResponse

_lock = threading.Lock()
_by_grant_type = defaultdict(lambda: defaultdict(int))
_cloud_by_grant_type = defaultdict(lambda: defaultdict(int))
_cloud_events = defaultdict(int)
# Client credentials requests per Client ID (service accounts), per platform: {"dc"|"cloud": {client_id: {status: n}}}
_by_client = {"dc": defaultdict(lambda: defaultdict(int)), "cloud": defaultdict(lambda: defaultdict(int))}


def record_token_request(grant_type, status):
    with _lock:
        _by_grant_type[grant_type or "(none)"][str(status)] += 1


def record_cloud_token_request(grant_type, status):
    with _lock:
        _cloud_by_grant_type[grant_type or "(none)"][str(status)] += 1


def record_client_credentials(platform, client_id, status):
    with _lock:
        _by_client[platform][client_id or "(none)"][str(status)] += 1


def record_cloud_reuse_within_leeway():
    with _lock:
        _cloud_events["reuse_within_leeway"] += 1


def record_cloud_family_killed():
    with _lock:
        _cloud_events["families_killed"] += 1


def _counts(by_grant_type):
    by_grant_type = {grant: dict(statuses) for grant, statuses in by_grant_type.items()}
    return {
        "token_requests": sum(sum(s.values()) for s in by_grant_type.values()),
        "token_grants": sum(s.get("200", 0) for s in by_grant_type.values()),
        "by_grant_type": by_grant_type,
    }


def snapshot():
    with _lock:
        data_center = _counts(_by_grant_type)
        cloud = _counts(_cloud_by_grant_type)
        cloud["reuse_within_leeway"] = _cloud_events["reuse_within_leeway"]
        cloud["families_killed"] = _cloud_events["families_killed"]
        data_center["service_accounts"] = {client: dict(statuses) for client, statuses in _by_client["dc"].items()}
        cloud["service_accounts"] = {client: dict(statuses) for client, statuses in _by_client["cloud"].items()}
    return {**data_center, "cloud": cloud}


def stats_view(request):
    """GET /sandbox/stats: {"token_requests", "token_grants", "by_grant_type": {grant: {status: n}}, "cloud": {...}}.

    The top level counts the Data Center token endpoint; "cloud" counts Atlassian
    Cloud's the same way, plus "reuse_within_leeway" (replaced refresh tokens
    honoured inside the leeway) and "families_killed" (consents revoked for reuse after it). Both have
    "service_accounts": client credentials requests per Client ID, {client_id: {status: n}}.
    """
    return JsonResponse(snapshot())
