"""The "which grants need attention" queries, and the one rule of when a grant is refreshed.

Every kind of grant follows the same rules: it is kept alive (kinds.GrantKind.kept_alive: a refresh token is
present, Jira has not refused the grant, and its owner may use it: never an inactive person's credential), Jira
does not refuse its account's client (a removed link: then one check every CLIENT_RECHECK, see
services.client_refused), and it is due (`due`):

- **in use** (the product asked for its token within REFRESH_ACTIVE_WITHIN_HOURS, `in_use`): kept fresh, refreshed
  once its access token expires within the window or its expiry is unknown (models.is_due);
- **idle**: only kept alive, one refresh every REFRESH_IDLE_KEEPALIVE_HOURS. Each grant has its keep-alive moment
  in every interval (`keepalive_phase`: a fixed offset from its id, so that idle grants are spread evenly over the
  interval rather than all due the same minute); the grant is due once the last keep-alive moment has passed since
  Jira last issued its tokens (last refresh, else consent), and its access token is expiring (it always is by
  then, unless the interval is shorter than the token's life). The on-demand refresh (grants.valid_access_token)
  serves an idle grant the product needs, as before.

The refresher (due_grants), the status at a glance, the metrics and the health section (`plan`, the same rule in
Python, for one grant read already) all ask here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import BigIntegerField, F, Func, IntegerField, Q, QuerySet, Value
from django.db.models.functions import Cast, Coalesce, Mod
from django.db.models.lookups import LessThan
from django.utils import timezone

from .conf import app_settings
from .kinds import KINDS, GrantKind
from .models import Grant, is_due

# A removed link (Jira refuses the account's Client ID and Secret) is checked again this often, one token
# request per account; editing the credentials makes it checked at the next pass.
CLIENT_RECHECK = timedelta(hours=6)


def _client_accepted(kind: GrantKind) -> Q:
    """Jira does not refuse the grant's account's client, or that refusal is due to be checked again."""
    account = kind.account_path
    return (Q(**{f"{account}client_refused_at__isnull": True})
            | Q(**{f"{account}client_checked_at__isnull": True})
            | Q(**{f"{account}client_checked_at__lte": timezone.now() - CLIENT_RECHECK}))


# The golden ratio: consecutive ids times it, modulo the interval, fall evenly over the interval (a Weyl sequence).
SPREAD_RATIO = 0.6180339887498949


def active_within() -> timedelta:
    return timedelta(hours=app_settings.REFRESH_ACTIVE_WITHIN_HOURS)


def keepalive_interval() -> timedelta:
    return timedelta(hours=app_settings.REFRESH_IDLE_KEEPALIVE_HOURS)


def _multiplier(interval: int) -> int:
    return int(interval * SPREAD_RATIO) | 1


def keepalive_phase(pk: int, interval: int) -> int:
    """Seconds into each keep-alive interval (counted from the Unix epoch) at which grant `pk`'s keep-alive falls."""
    return (pk * _multiplier(interval)) % interval


def last_keepalive_moment(pk: int, now: datetime) -> datetime:
    """The latest keep-alive moment of grant `pk` at or before `now`."""
    interval = int(keepalive_interval().total_seconds())
    since = (int(now.timestamp()) - keepalive_phase(pk, interval)) % interval
    return now.replace(microsecond=0) - timedelta(seconds=since)


class EpochSeconds(Func):
    """Seconds since the Unix epoch of a datetime column, on PostgreSQL and SQLite."""

    output_field = BigIntegerField()
    template = "EXTRACT(EPOCH FROM %(expressions)s)"

    def as_sqlite(self, compiler, connection, **extra):
        # %%%% : one % left once the template is filled in, and that one escaped for the query's parameters.
        template = "CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)"
        return self.as_sql(compiler, connection, template=template, **extra)


def in_use(now: datetime | None = None) -> Q:
    """The grants the product asked a token of within REFRESH_ACTIVE_WITHIN_HOURS: kept fresh."""
    return Q(last_used_at__gte=(now or timezone.now()) - active_within())


def expiring(now: datetime, within: timedelta) -> Q:
    return Q(token_expires_at__isnull=True) | Q(token_expires_at__lte=now + within)


def keepalive_passed(now: datetime) -> Q:
    """Idle grants whose keep-alive moment has come since Jira last issued their tokens (never issued: due)."""
    interval = int(keepalive_interval().total_seconds())
    epoch = int(now.timestamp())
    phase = Mod(Cast(F("pk"), BigIntegerField()) * Value(_multiplier(interval), output_field=BigIntegerField()),
                Value(interval, output_field=IntegerField()))
    last_moment = Value(epoch, output_field=BigIntegerField()) - Mod(
        Value(epoch, output_field=BigIntegerField()) - phase, Value(interval, output_field=IntegerField()))
    issued = Coalesce("last_refreshed_at", "connected_at")
    return (Q(last_refreshed_at__isnull=True, connected_at__isnull=True)
            | Q(LessThan(EpochSeconds(issued), last_moment)))


def due(*, within: timedelta, now: datetime | None = None) -> Q:
    """The one rule: in use and expiring within `within`; or idle, expiring, and its keep-alive moment passed."""
    now = now or timezone.now()
    return expiring(now, within) & (in_use(now) | keepalive_passed(now))


def _due(kind: GrantKind, queryset: QuerySet, within: timedelta) -> QuerySet:
    """The one rule for the grants of one kind: its own (kinds.GrantKind.due: the access token expires within the
    window; a service account's check is due), and in use or its keep-alive moment passed (as `due`), unless
    the kind says the grant keeps its own cadence (GrantKind.on_their_own_cadence: a service account's check)."""
    now = timezone.now()
    fresh_or_kept_alive = in_use(now) | keepalive_passed(now)
    own_cadence = kind.on_their_own_cadence()
    if own_cadence is not None:
        fresh_or_kept_alive |= own_cadence
    return queryset.filter(kind.due(within) & fresh_or_kept_alive)


def refreshable_grants(kind: str) -> QuerySet[Grant]:
    """The grants of one kind ("account", "user": kinds.KINDS) still worth keeping alive (kinds.GrantKind.kept_alive),
    less those of an account whose client Jira refuses until it is checked again."""
    grant_kind = KINDS[kind]
    accepted, independent = _client_accepted(grant_kind), grant_kind.without_the_link()
    return grant_kind.model.objects.filter(grant_kind.kept_alive()).filter(
        accepted if independent is None else accepted | independent)


def due_grants(kind: str, *, within: timedelta) -> QuerySet[Grant]:
    return _due(KINDS[kind], refreshable_grants(kind), within)


@dataclass(frozen=True)
class Plan:
    """When one grant is refreshed next, and why (the health section)."""

    in_use: bool
    due: bool  # the refresher takes it at its next pass
    next_at: datetime | None  # the next planned refresh (None: due now, or expiry unknown)
    why: str  # "in use" or "keep-alive"


def plan(grant: Grant, *, within: timedelta, now: datetime | None = None) -> Plan:
    """`due` in Python, for one grant already read: whether the refresher takes it now, else when it will."""
    now = now or timezone.now()
    used = grant.last_used_at is not None and grant.last_used_at >= now - active_within()
    expiry_moment = None if grant.token_expires_at is None else grant.token_expires_at - within
    if used:
        return Plan(True, is_due(grant.token_expires_at, within=within, now=now), expiry_moment, "in use")
    issued = grant.last_refreshed_at or grant.connected_at
    last_moment = last_keepalive_moment(grant.pk, now)
    passed = issued is None or issued < last_moment
    next_moment = last_moment if passed else last_moment + keepalive_interval()
    if expiry_moment is not None and expiry_moment > next_moment:
        next_moment = expiry_moment
    return Plan(False, passed and is_due(grant.token_expires_at, within=within, now=now), next_moment, "keep-alive")
