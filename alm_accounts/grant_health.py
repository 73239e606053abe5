"""Each grant's health, where people look: the account's page (its own grant and each person's), a person's
credential page, and My ALM Credentials (their own).

What it says: when the product last used the grant, its last refresh and the next one planned, and why (in use:
before the access token expires; keep-alive: an idle grant refreshed once every REFRESH_IDLE_KEEPALIVE_HOURS, the
one rule of selectors.plan), how long its refresh token can still live (Data Center: 90 days from the last
refresh; Jira Cloud: 90 days without a refresh and 365 days from the consent), the scopes Jira granted beside
those asked for, and the last TIMELINE_DAYS of refreshes drawn as an inline SVG timeline built here on the server
(successes, failures, recoveries, latency), no JavaScript. `healths` reads the days of every grant on a page in one
query, whatever their number and history; never a token.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import selectors
from .kinds import kind_of
from .models import Grant, GrantStatus, RefreshDay
from .providers import provider_for
from .services.history import TIMELINE_DAYS

WINDOW = timedelta(minutes=15)  # the refresher's default window: when a grant in use is refreshed before expiry
# The timeline's geometry (pixels): a column per day; successes up from the middle line, failures down.
DAY_WIDTH, BAR_WIDTH, HALF, LATENCY_BAND = 12, 8, 26, 18


@dataclass(frozen=True)
class GrantHealth:
    grant: Grant
    now: datetime
    plan: selectors.Plan
    days: list[RefreshDay | None]  # one per day, oldest first, the last is today (None: no refresh that day)

    @property
    def last_used(self) -> datetime | None:
        return self.grant.last_used_at

    @property
    def last_refresh(self) -> datetime | None:
        return self.grant.last_refreshed_at

    @property
    def why(self) -> str:
        if self.plan.in_use:
            ends = self.grant.last_used_at + selectors.active_within()
            return ("in use: refreshed before its access token expires, until "
                    f"{_when(ends)} unless the product uses it again")
        return (f"keep-alive: idle, refreshed once every {selectors.keepalive_interval().total_seconds() / 3600:g} h; "
                "when the product needs it, it is refreshed on demand")

    @property
    def ended(self) -> bool:
        """No refresh is planned: not connected, or Jira no longer accepts it (read without the token columns)."""
        return self.grant.status in (GrantStatus.NOT_CONNECTED, GrantStatus.NEEDS_REAUTHORIZATION)

    @property
    def next_refresh(self) -> str:
        if self.ended:
            return f"none: {self.grant.get_status_display().lower()}"
        if self.plan.due or self.plan.next_at is None or self.plan.next_at <= self.now:
            return "at the refresher's next pass"
        return f"about {_when(self.plan.next_at)}"

    @property
    def refresh_token_life(self) -> str:
        provider = provider_for(self.grant.grant_account)
        if kind_of(self.grant).by_client_credentials(self.grant):
            return "no refresh token: a service account asks for a new token with its Client ID and Secret"
        lifetime = provider.refresh_token_lifetime
        issued = self.grant.last_refreshed_at or self.grant.connected_at
        if lifetime is None or issued is None or self.ended:
            return "—"
        ends = issued + lifetime
        words = f"until {_when(ends)} ({_days_left(ends, self.now)}): {provider.refresh_token_rule}"
        if provider.consent_lifetime is not None and self.grant.connected_at is not None:
            consent_ends = self.grant.connected_at + provider.consent_lifetime
            words += f"; the consent ends {_when(consent_ends)} ({_days_left(consent_ends, self.now)})"
        return words

    @property
    def scopes_needed(self) -> str:
        return provider_for(self.grant.grant_account).requested_scope(self.grant.grant_account)

    @property
    def scopes_granted(self) -> str:
        return self.grant.token_scope

    @property
    def scopes_differ(self) -> bool:
        granted = set(self.scopes_granted.split())
        return bool(granted) and granted != set(self.scopes_needed.split())

    @property
    def totals(self) -> dict:
        seen = [d for d in self.days if d is not None]
        return {name: sum(getattr(d, name) for d in seen)
                for name in ("successes", "failures", "recoveries", "keepalives")}

    def timeline(self) -> SafeString:
        return timeline_svg(self.days, today=self.now.date())

    def render(self) -> SafeString:
        return render_to_string("alm_accounts/grant_health.html", {"health": self})


def healths(grants: list[Grant], *, now: datetime | None = None) -> dict[tuple[str, int], GrantHealth]:
    """The health of each grant, by (kind, pk): one query for all their days, whatever the history."""
    now = now or timezone.now()
    first = now.date() - timedelta(days=TIMELINE_DAYS - 1)
    wanted = Q(pk__in=[])
    by_kind = defaultdict(list)
    for grant in grants:
        by_kind[grant.grant_kind].append(grant.pk)
    for kind, pks in by_kind.items():
        wanted |= Q(grant_kind=kind, grant_id__in=pks)
    days = defaultdict(dict)
    if grants:
        for row in RefreshDay.objects.filter(wanted, day__gte=first):
            days[(row.grant_kind, row.grant_id)][row.day] = row
    result = {}
    for grant in grants:
        own = days[(grant.grant_kind, grant.pk)]
        result[(grant.grant_kind, grant.pk)] = GrantHealth(
            grant=grant, now=now, plan=selectors.plan(grant, within=WINDOW, now=now),
            days=[own.get(first + timedelta(days=i)) for i in range(TIMELINE_DAYS)])
    return result


def health_of(grant: Grant, *, now: datetime | None = None) -> GrantHealth:
    return healths([grant], now=now)[(grant.grant_kind, grant.pk)]


def timeline_svg(days: list[RefreshDay | None], *, today: date) -> SafeString:
    """The days as an inline SVG: per day a green bar up (successes, log scale), a red bar down (failures), a blue
    dot for a recovery, and a grey line for the mean latency; each day's numbers in its tooltip (<title>)."""
    most = max((d.successes for d in days if d is not None), default=0)
    failures_most = max((d.failures for d in days if d is not None), default=0)
    slowest = max((d.latency_ms_total / d.attempts for d in days if d is not None and d.attempts), default=0)
    width, height = DAY_WIDTH * len(days), 2 * HALF + LATENCY_BAND + 4
    first = today - timedelta(days=len(days) - 1)
    columns, points = [], []
    for i, day in enumerate(days):
        x = i * DAY_WIDTH + (DAY_WIDTH - BAR_WIDTH) // 2
        moment = first + timedelta(days=i)
        if day is None:
            columns.append(format_html('<g class="alm-day alm-day-empty"><title>{}: no refresh</title>'
                                       '<rect x="{}" y="{}" width="{}" height="1" fill="#ccc"/></g>',
                                       moment.isoformat(), x, HALF, BAR_WIDTH))
            continue
        up = _scaled(day.successes, most, HALF - 2)
        down = _scaled(day.failures, failures_most, HALF - 2)
        mean = day.latency_ms_total / day.attempts if day.attempts else 0
        parts = [format_html('<rect class="alm-success" x="{}" y="{}" width="{}" height="{}" fill="#2e7d32"/>',
                             x, HALF - up, BAR_WIDTH, up) if up else "",
                 format_html('<rect class="alm-failure" x="{}" y="{}" width="{}" height="{}" fill="#c62828"/>',
                             x, HALF, BAR_WIDTH, down) if down else "",
                 format_html('<circle class="alm-recovery" cx="{}" cy="{}" r="3" fill="#1565c0"/>',
                             x + BAR_WIDTH / 2, HALF - up - 4) if day.recoveries else ""]
        if day.attempts:
            points.append((i * DAY_WIDTH + DAY_WIDTH / 2,
                           height - 2 - (mean / slowest * LATENCY_BAND if slowest else 0)))
        tip = (f"{moment.isoformat()}: {day.successes} refreshed ({day.keepalives} keep-alive), {day.failures} "
               f"failed, {day.recoveries} recovered; Jira answered in {mean:.0f} ms on average, "
               f"{day.latency_ms_max} ms at most")
        columns.append(format_html('<g class="alm-day"><title>{}</title>{}</g>', tip, SafeString("".join(parts))))
    line = format_html('<polyline class="alm-latency" points="{}" fill="none" stroke="#757575" stroke-width="1.5"/>',
                       " ".join(f"{x:.1f},{y:.1f}" for x, y in points)) if len(points) > 1 else ""
    seen = [d for d in days if d is not None]
    label = (f"Refreshes of the last {len(days)} days: {sum(d.successes for d in seen)} succeeded, "
             f"{sum(d.failures for d in seen)} failed, {sum(d.recoveries for d in seen)} recoveries")
    return format_html(
        '<svg class="alm-timeline" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>'
        '<line x1="0" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-width="0.5"/>{}{}</svg>',
        label, width, height, width, height, label, HALF, width, HALF,
        format_html_join("", "{}", ((column,) for column in columns)), line)


def _scaled(value: int, most: int, room: int) -> int:
    """A count as a bar height: log scale (a day of 24 refreshes and a day of one both show), at least 2 px."""
    if not value or not most:
        return 0
    return max(2, round(room * math.log1p(value) / math.log1p(most)))


def _when(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def _days_left(ends: datetime, now: datetime) -> str:
    left = ends - now
    if left <= timedelta(0):
        return "ended"
    if left < timedelta(days=1):
        return "less than a day left"
    return f"{left.days} days left"
