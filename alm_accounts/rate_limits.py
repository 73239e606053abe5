"""Rate limits: what Jira and Atlassian's gateway say about them in an answer's headers, and what this process
does about it (the pacing of each Jira host and app, and the counts /metrics shows, until they are written).

Jira Data Center (8.6 and later, when an administrator turns rate limiting on): a token bucket per user,
`X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Interval-Seconds`, `X-RateLimit-FillRate`, and
`Retry-After` in seconds on a 429.

Atlassian's gateway (Jira Cloud; since March 2026 an hourly points quota per app, burst limits per endpoint and a
per-issue write limit): `Retry-After` (seconds), `X-RateLimit-Reset` (an ISO 8601 time, e.g. 2026-03-26T16:00Z),
`X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-NearLimit: true` (under 20 % left) and
`RateLimit-Reason` (which limit: jira-quota-global-based, jira-quota-tenant-based, jira-burst-based,
jira-per-issue-on-write). While Atlassian tried them out they were also sent with a "Beta" in the name
(X-Beta-RateLimit-Reason, X-Beta-RateLimit-NearLimit): read as well.

No Django here, like jira.py: the clients hand what they read to whoever asked (services.rate_limits), which
knows the provider and the settings.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# The longest wait read from a header; anything longer is reported as it is up to this (an absurd value is capped).
MAX_HEADER_SECONDS = 3600.0
# A bucket with less than this share left is "near the limit" (Atlassian's X-RateLimit-NearLimit says the same).
NEAR_LIMIT_SHARE = 0.2
REASON_HEADERS = ("RateLimit-Reason", "X-RateLimit-Reason", "X-Beta-RateLimit-Reason")
NEAR_LIMIT_HEADERS = ("X-RateLimit-NearLimit", "X-Beta-RateLimit-NearLimit")
# The reasons Atlassian documents; any other value is counted as "other" (a metric label takes no free text).
KNOWN_REASONS = frozenset({"jira-quota-global-based", "jira-quota-tenant-based", "jira-burst-based",
                           "jira-per-issue-on-write"})
_REASON = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,59}")


@dataclass(frozen=True)
class RateLimit:
    """What one answer said about a rate limit: refused (429), or near it."""

    status: int
    retry_after: float | None  # seconds to wait: Retry-After (seconds or an HTTP date), else X-RateLimit-Reset
    reason: str  # which limit (RateLimit-Reason), "" when not said
    near_limit: bool
    remaining: int | None = None
    limit: int | None = None

    @property
    def refused(self) -> bool:
        return self.status == 429

    @property
    def reason_label(self) -> str:
        """The reason as a metric label: a documented one, "other", or "unspecified"."""
        if not self.reason:
            return "unspecified"
        return self.reason if self.reason in KNOWN_REASONS else "other"


def read(headers, status: int, *, now: datetime | None = None) -> RateLimit | None:
    """The rate-limit signal of an answer (its status and headers), or None when it says nothing of one."""
    limit, remaining = _integer(headers.get("X-RateLimit-Limit")), _integer(headers.get("X-RateLimit-Remaining"))
    near = any(str(headers.get(name, "")).strip().lower() == "true" for name in NEAR_LIMIT_HEADERS) or (
        limit is not None and limit > 0 and remaining is not None and remaining < NEAR_LIMIT_SHARE * limit)
    if status != 429 and not near:
        return None
    now = now or datetime.now(UTC)
    wait = retry_after(headers.get("Retry-After"), now=now)
    if wait is None:
        wait = _reset_in(headers.get("X-RateLimit-Reset"), now=now)
    reason = next((str(headers[name]).strip() for name in REASON_HEADERS if headers.get(name)), "")
    if reason and not _REASON.fullmatch(reason):
        reason = "other"  # a header is the network's text: only a plain name is repeated in messages and labels
    return RateLimit(status=status, retry_after=wait, reason=reason, near_limit=near, remaining=remaining,
                     limit=limit)


def retry_after(value, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds, or an HTTP date (RFC 9110); None when unreadable."""
    text = str(value or "").strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return min(float(text), MAX_HEADER_SECONDS)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _seconds_until(moment, now)


def _reset_in(value, *, now: datetime | None) -> float | None:
    """Seconds until X-RateLimit-Reset: Atlassian's ISO 8601 time (2026-03-26T16:00Z), or a Unix time. A reset
    already past says nothing useful (Atlassian has been seen sending one): None, so the usual backoff applies."""
    text = str(value or "").strip()
    if not text:
        return None
    if text.isdecimal():
        number = float(text)
        if number < 1e9:  # some servers send seconds, not a time
            return min(number, MAX_HEADER_SECONDS) or None
        try:
            moment = datetime.fromtimestamp(number, UTC)
        except (OverflowError, OSError, ValueError):  # past any calendar: as far away as a header may say
            return MAX_HEADER_SECONDS
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return _seconds_until(moment, now) or None


def _seconds_until(moment: datetime, now: datetime | None) -> float:
    now = now or datetime.now(UTC)
    return min(max(0.0, (moment - now).total_seconds()), MAX_HEADER_SECONDS)


def _integer(value) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.isdecimal() else None


class Pacing:
    """Per Jira host and app (JiraClient.rate_limit_key): the moment before which no call of this process starts.

    Set when an answer says the limit is near; each call waits for it (bounded by its caller) before it is sent.
    Process-wide and thread-safe; a process's calls are paced, not another process's.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._not_before: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def slow_down(self, key: tuple, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._not_before[key] = max(self._not_before.get(key, 0.0), self._clock() + seconds)

    def wait_for(self, key: tuple) -> float:
        """Seconds until calls to `key` may start again (0: now)."""
        with self._lock:
            until = self._not_before.get(key)
            if until is None:
                return 0.0
            left = until - self._clock()
            if left <= 0:
                del self._not_before[key]
                return 0.0
            return left

    def clear(self) -> None:
        with self._lock:
            self._not_before.clear()


class Counts:
    """Rate-limited answers and near-limit signals this process has seen and not yet handed on, by (signal,
    provider, reason): services.rate_limits adds them to the database, where /metrics reads them, and takes what it
    wrote off here. Adding is a dictionary update under a lock: what a Jira call pays for being counted."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._counts: Counter = Counter()
        self._last_seen: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def add(self, provider: str, signal: RateLimit) -> bool:
        """Count what `signal` says; True when it counted something (a 429, a near limit, or both)."""
        keys = []
        if signal.refused:
            keys.append(("rate_limited", provider, signal.reason_label))
        if signal.near_limit:
            keys.append(("near_limit", provider, ""))
        now = self._clock()
        with self._lock:
            for key in keys:
                self._counts[key] += 1
                self._last_seen[key] = now
        return bool(keys)

    def snapshot(self) -> dict[tuple[str, str, str], tuple[int, float]]:
        """{(signal, provider, reason): (count, when the last one was seen, Unix time)} not handed on yet."""
        with self._lock:
            return {key: (number, self._last_seen[key]) for key, number in self._counts.items() if number}

    def subtract(self, handed_on: dict[tuple[str, str, str], tuple[int, float]]) -> None:
        """Take off what was handed on (a snapshot): what was counted meanwhile stays."""
        with self._lock:
            for key, (number, _) in handed_on.items():
                self._counts[key] -= number
                if self._counts[key] <= 0:  # (below 0 only after a clear() meanwhile)
                    del self._counts[key]
                    self._last_seen.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._last_seen.clear()


PACING = Pacing()  # REST calls: a host (per app) near its limit
# Token endpoints (per app) that answered 429 with a wait: no refresh of this process asks them again before it ends
# (services.grants), so a refresher pass over thousands of due grants does not spend the quota on 429s.
TOKEN_ENDPOINTS = Pacing()
COUNTS = Counts()
