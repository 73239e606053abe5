"""Which grants the refresher takes, and in what order: the most urgent first, streamed from the database.

Two kinds of grant are kept alive, by the same rules: each ALM account's own
connection (Get Auth Token) and each person's own user credential (My ALM
Credentials). An inactive person's credential is never refreshed
(selectors.refreshable_grants / due_grants say which are).
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from itertools import islice

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F

from alm_accounts import selectors
from alm_accounts.kinds import KINDS, ReadAlong
from alm_accounts.models import ALMAccount, ALMCredential
from alm_accounts.providers import provider_for
from alm_accounts.services import RefreshOutcome

from .pacing import TokenHost
from .report import GRANT_KINDS, BadArguments

SPREAD_BLOCK, SPREAD_BATCH = 2000, 16  # see spread
# The grants whose read-along rows are read at once (ReadAlongBatches), per thread refreshing, within these bounds:
# a few statements per batch instead of two joined tables per refresh.
READ_ALONG_PER_THREAD, READ_ALONG_BATCH_LIMITS = 8, (16, 256)
# Seconds a batch's rows wait for their grants at most (a grant handed out later reads them under its lock): an
# account's edit reaches the refresher within this, as it did when each refresh read its account itself.
READ_ALONG_MAX_AGE = 10.0
LONGEST_ID = 18  # digits: a number longer than any id matches none


def select(accounts: list[str], due_within: timedelta | None):
    """(kind, id, name, expiry, token host) of the grants to consider, most urgent first, streamed from the database.

    Two lists, each ordered by expiry (unknown first: it is due), merged as
    they are read, so that memory stays bounded however many grants there
    are. With --account: those accounts' own connections and every user
    credential on them, whatever their state (a real run says why one is
    not refreshed).
    """
    if accounts:
        ids = named_accounts(accounts)
        querysets = {"account": ALMAccount.objects.filter(pk__in=ids),
                     "user": ALMCredential.objects.filter(account__in=ids)}
    elif due_within is None:
        querysets = {kind: selectors.refreshable_grants(kind) for kind in GRANT_KINDS}
    else:
        querysets = {kind: selectors.due_grants(kind, within=due_within) for kind in GRANT_KINDS}
    hosts = TokenHosts()
    return heapq.merge(*(_rows(kind, queryset, hosts) for kind, queryset in querysets.items()), key=_urgency)


class TokenHosts:
    """The token host (pacing.TokenHost) of each account's grants, asked of its provider once per base URL."""

    def __init__(self):
        self._known: dict[tuple[str, str], TokenHost] = {}

    def __call__(self, authentication: str, base_url: str) -> TokenHost:
        host = self._known.get((authentication, base_url))
        if host is None:
            account = ALMAccount(authentication=authentication, base_url=base_url)
            provider = provider_for(account)
            host = self._known[(authentication, base_url)] = TokenHost(provider.token_host(account),
                                                                       provider.token_requests_at_once())
        return host


def named_accounts(accounts: list[str]) -> list[int]:
    """The ids of the accounts named (by name, else by id); BadArguments for one that does not exist."""
    ids = []
    for value in accounts:
        match = ALMAccount.objects.filter(name=value).values_list("pk", flat=True).first()
        # isascii(): isdigit() also accepts "²", which int() refuses (as jira_call does).
        if match is None and value.isascii() and value.isdigit() and len(value) <= LONGEST_ID:
            match = ALMAccount.objects.filter(pk=int(value)).values_list("pk", flat=True).first()
        if match is None:
            raise BadArguments(f"No ALM account named or numbered {value!r}.")
        ids.append(match)
    return ids


def dry_run_verdict(kind: str, pk: int, due_within) -> str:
    """What a real run would do with a grant listed by --account --dry-run."""
    if not selectors.refreshable_grants(kind).filter(pk=pk).exists():
        return RefreshOutcome.NOT_CONNECTED.value
    if due_within is not None and not selectors.due_grants(kind, within=due_within).filter(pk=pk).exists():
        return RefreshOutcome.NOT_DUE.value
    return "would refresh"


class Counted:
    """An iterator of (kind, ...) rows that counts, by kind, the rows taken (to tell what was left untried)."""

    def __init__(self, iterable):
        self._iterator = iter(iterable)
        self.taken: Counter[str] = Counter()

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._iterator)
        self.taken[item[0]] += 1
        return item


def spread(todo, due_within, *, contended: threading.Event, dropped: Counter[str]):
    """The due grants, most urgent first; once another runner is met (`contended`), shuffled and filtered.

    Runners started together (cron on several hosts) walk the same list in
    step: each would try every grant and find most of them locked
    (skipped) or just refreshed, at three queries apiece. From the first
    such grant on, the rest of each block of the most urgent grants is
    shuffled, which keeps the runners apart, and one query per batch and
    kind drops what another runner has refreshed since the list was read
    (counted in `dropped`, by kind). A runner alone keeps the order. The row
    lock and the re-check under it decide.
    """
    shuffle = random.Random().shuffle  # noqa: S311 - an order, not a secret
    todo = iter(todo)
    while block := list(islice(todo, SPREAD_BLOCK)):
        shuffled = False
        for start in range(0, len(block), SPREAD_BATCH):
            if not contended.is_set():
                yield from block[start:start + SPREAD_BATCH]
                continue
            if not shuffled:
                rest = block[start:]
                shuffle(rest)
                block[start:], shuffled = rest, True
            batch = block[start:start + SPREAD_BATCH]
            due = _still_due(batch, due_within)
            dropped.update(item[0] for item in batch if (item[0], item[1]) not in due)
            yield from (item for item in batch if (item[0], item[1]) in due)


def _urgency(row) -> tuple:
    """The order of _rows: an unknown expiry first (it is due), then by expiry."""
    expires = row[3]
    return (0,) if expires is None else (1, expires)


def _rows(kind: str, queryset, hosts: TokenHosts):
    """(kind, id, name, expiry, token host) of the grants in `queryset`, by _urgency, named as in the command's
    lines."""
    if kind == "account":
        fields = ("pk", "name", "token_expires_at")
    else:
        fields = ("pk", "account__name", f"user__{get_user_model().USERNAME_FIELD}", "token_expires_at")
    account = KINDS[kind].account_path
    fields += (f"{account}authentication", f"{account}base_url")
    rows = queryset.order_by(F("token_expires_at").asc(nulls_first=True), "pk").values_list(*fields)
    if connection.vendor == "sqlite":
        # An unfinished SQLite read keeps a lock that stops other runners from committing: read it all at once
        # (at the first grant, so that a failure to read it is reported like any other, see Run.read).
        rows = _all_at_once(rows)
    else:
        rows = rows.iterator(chunk_size=2000)
    for row in rows:
        *row, authentication, base_url = row
        if kind == "account":
            pk, name, expires = row
        else:
            pk, account_name, owner, expires = row
            name = f"{account_name} ({owner})"  # as services.grant_name names a person's credential
        yield kind, pk, name, expires, hosts(authentication, base_url)


def _still_due(batch, due_within) -> set[tuple[str, int]]:
    """(kind, id) of the grants in `batch` that are still due: one query per kind present."""
    due = set()
    for kind in GRANT_KINDS:
        pks = [item[1] for item in batch if item[0] == kind]
        if pks:
            due.update((kind, pk) for pk in selectors.due_grants(kind, within=due_within).filter(
                pk__in=pks).values_list("pk", flat=True))
    return due


def _all_at_once(rows):
    yield from list(rows)


class ReadAlongBatches:
    """The rows each due grant's refresh reads along (a person's account and person), read for a batch of grants
    at once and handed to each refresh, so that its locked read is the grant's own row only.

    A person's refresh reads their account (the client that refreshes, where to) and their person (active?).
    Read with the credential under its lock, that is a three-table statement built and run per refresh; the
    accounts are few and shared by many people. Here they are read in three statements per batch of due grants,
    just before the batch is handed to the pacer (refresher.pacing), which hands its grants out a few hundred
    grants later, by turns of their Jiras. Each grant's rows wait for it with their batch, at most
    READ_ALONG_MAX_AGE seconds: a grant held longer (its Jira at its limit) gets none, and its locked read reads
    them. The grant's own row is still read under its lock and decides (its tokens, status and expiry), with the
    columns of the others that change while a refresher runs (GrantKind.fresh_along); an account edited since its
    batch was read is seen by the next batch, as by a refresh that had read it just before the edit.
    With --processes, each grant's rows go with it to its worker process (refresher.processes), pickled.
    """

    def __init__(self, *, concurrency: int):
        low, high = READ_ALONG_BATCH_LIMITS
        self.batch = min(high, max(low, READ_ALONG_PER_THREAD * concurrency))
        self.max_age = READ_ALONG_MAX_AGE
        # (kind, id) -> (when its batch was read, its rows), until its grant is handed out (take).
        self.rows: dict[tuple[str, int], tuple[float, ReadAlong]] = {}

    def reading(self, items):
        """The (kind, id, name, ...) items, unchanged, each batch's read-along rows read before its first is
        yielded."""
        items = iter(items)
        while True:
            batch = []
            try:
                batch.extend(islice(items, self.batch))
            except Exception:
                # The list broke off (a lost connection): the grants read before the break are still refreshed,
                # as without batches (their locked reads read along), then the run learns of the break.
                yield from batch
                raise
            if not batch:
                return
            read_at = time.monotonic()
            self.rows.update((key, (read_at, rows)) for key, rows in self._read(batch).items())
            yield from batch

    def take(self, kind: str, pk: int) -> ReadAlong | None:
        """The grant's read-along rows, once (None: not read, or read too long ago: the locked read reads them)."""
        read_at, rows = self.rows.pop((kind, pk), (None, None))
        if read_at is None or time.monotonic() - read_at > self.max_age:
            return None
        return rows

    @staticmethod
    def _read(batch) -> dict[tuple[str, int], ReadAlong]:
        rows: dict[tuple[str, int], ReadAlong] = {}
        for kind_key in GRANT_KINDS:
            kind = KINDS[kind_key]
            pks = [item[1] for item in batch if item[0] == kind_key]
            if not pks or not kind.read_along:
                continue
            fields = [kind.model._meta.get_field(name) for name in kind.read_along]
            links = kind.model.objects.filter(pk__in=pks).values_list("pk", *(field.attname for field in fields))
            links = {pk: ids for pk, *ids in links}
            related = [field.related_model.objects.in_bulk({ids[i] for ids in links.values()})
                       for i, field in enumerate(fields)]
            for pk, ids in links.items():
                rows[(kind_key, pk)] = {field.name: found.get(ids[i])
                                        for i, (field, found) in enumerate(zip(fields, related, strict=True))}
        return rows
