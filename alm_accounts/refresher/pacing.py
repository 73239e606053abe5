"""Pace each Jira: at most a few token requests in flight per host, the hosts served in turn.

Jira Data Center takes one cluster-wide lock per refresh (a 10 s wait, then
the refresh fails): 32 refreshes in flight against one customer's Jira only
queue there, and that customer's 5,000 people would hold every thread of the
run while the other customers wait. So each run keeps, per token host
(providers.Provider.token_host: a Data Center's base URL host; for Jira
Cloud, Atlassian's token endpoint, shared by every Cloud grant), at most
that host's limit (Provider.token_requests_at_once:
REFRESH_CONCURRENCY_PER_JIRA, REFRESH_CONCURRENCY_ATLASSIAN) of grants
handed to a refresh, and fills the rest of --concurrency with other hosts'.

The limit is kept where grants are handed out, in the run's main process:
a grant counts against its host from the moment it is handed to a thread or
a worker process (--processes) until its result is back, so it holds across
worker processes. It is per run: several runners (hosts, cron) each keep
their own, and the product's on-demand refreshes are not counted.

Order: the hosts take turns (round-robin), and each host's grants keep the
list's order, the most urgent first. The list is streamed (selection.select):
the pacer reads a little ahead (READ_AHEAD grants) to see which hosts are
waiting, and further only when every grant it holds waits for its host's
turn while a thread would be idle, never holding more than LOOKAHEAD grants:
memory stays bounded. Only if a single host has more than LOOKAHEAD grants
due ahead of everyone else's do the others wait for it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque

READ_AHEAD = 256  # grants read ahead of need: the hosts seen at once to take turns between
LOOKAHEAD = 20_000  # grants held at most (a few MB): read only when nothing held can start


@dataclasses.dataclass(frozen=True)
class TokenHost:
    """Where a grant's token request goes (scheme://host[:port]) and how many may be in flight there at once."""

    url: str
    limit: int


class Pacer:
    """The grants of one run in the order they are handed out, and the token requests in flight per host.

    `items` yields tuples whose last element is the grant's TokenHost. take() gives the next grant to hand out
    (None: none can start until one ends, or none is left); done(item) when its refresh has ended. `limit`, if
    given, is every host's limit instead of its own (refresh_tokens --per-jira).
    """

    def __init__(self, items, *, limit: int | None = None, read_ahead: int = READ_AHEAD,
                 lookahead: int = LOOKAHEAD):
        self._limit = limit
        self._items = iter(items)
        self._read_ahead, self._lookahead = read_ahead, lookahead
        self._exhausted = False
        self._waiting: dict[TokenHost, deque] = {}
        self._turns: deque[TokenHost] = deque()  # the hosts with grants waiting, the next one's turn first
        self._held = 0
        self.in_flight: Counter[TokenHost] = Counter()
        self.peak: Counter[TokenHost] = Counter()  # the most in flight at once, per host
        self.held_back: Counter[TokenHost] = Counter()  # per host: how often its limit kept a grant waiting

    @property
    def exhausted(self) -> bool:
        """Every grant of the list was handed out."""
        return self._exhausted and not self._held

    def take(self, *, idle: bool = True):
        """The next grant to hand out: the next host in turn with room, its most urgent grant.

        `idle`: a thread (or worker) would otherwise have nothing to do. Only then is the list read beyond
        READ_AHEAD for another host's grant when every grant held waits for its host; a caller only filling its
        queue (every thread busy) gets None instead, and asks again when a refresh ends. Else one Jira at its limit
        would have the whole list read at the start of a run: held in memory, and the rows read along with it
        (selection.ReadAlongBatches) too old to be used by the time their grants' turns came.
        """
        while self._held < self._read_ahead and self._read_one() is not None:
            pass
        item = self._next_startable()
        while item is None and idle and self._held < self._lookahead and (host := self._read_one()) is not None:
            if self.in_flight[host] < self.limit_of(host):  # a grant that can start: another host's
                item = self._next_startable()
        return item

    def done(self, item) -> None:
        """The refresh of `item` ended (or was withdrawn before it started): its host has room again."""
        self.in_flight[item[-1]] -= 1

    def _next_startable(self):
        for _ in range(len(self._turns)):
            host = self._turns[0]
            if self.in_flight[host] >= self.limit_of(host):
                self.held_back[host] += 1
                self._turns.rotate(-1)
                continue
            waiting = self._waiting[host]
            item = waiting.popleft()
            self._held -= 1
            if waiting:
                self._turns.rotate(-1)  # the next host's turn
            else:
                self._turns.popleft()
                del self._waiting[host]
            self.in_flight[host] += 1
            self.peak[host] = max(self.peak[host], self.in_flight[host])
            return item
        return None

    def limit_of(self, host: TokenHost) -> int:
        return self._limit or host.limit

    def _read_one(self) -> TokenHost | None:
        """Read one more grant of the list; its host (None: the list has ended)."""
        if self._exhausted:
            return None
        item = next(self._items, None)
        if item is None:
            self._exhausted = True
            return None
        host = item[-1]
        if host not in self._waiting:
            self._waiting[host] = deque()
            self._turns.append(host)
        self._waiting[host].append(item)
        self._held += 1
        return host


def paced_note(pacer: Pacer) -> str:
    """The summary's sentence about the hosts whose limit kept grants waiting ("" if none did)."""
    full = sorted(pacer.held_back, key=lambda host: (-pacer.held_back[host], host.url))  # the busiest first
    if not full:
        return ""
    shown = ", ".join(f"{host.url} {pacer.peak[host]}" for host in full[:3])
    more = f" and {len(full) - 3} more" if len(full) > 3 else ""
    limits = sorted({pacer.limit_of(host) for host in full})
    limit = " or ".join(str(n) for n in limits)
    return f" Paced to at most {limit} token requests in flight per Jira host; the most at once: {shown}{more}."
