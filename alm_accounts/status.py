"""Status at a glance, above the ALM Accounts list: how the connections are doing, and whether the refresher runs.

Three kinds of grant health, each counted for the accounts' own connections and
for people's user credentials, and each one filter (GrantHealthFilter) on the
two admin lists so that a count links to exactly the rows it counts:

- connected: Jira's grant works and the last refresh succeeded;
- needs re-authorization: Jira refused the grant, someone must connect again;
- failing: in error, or connected but refreshes fail since `failing_since`;
- client refused: Jira refuses the account's Client ID and Secret (its link
  was removed or its secret changed, services.client_refused): counted apart,
  whatever the grant's own state, because only a Jira administrator can help.

The refresher's heartbeat (models.RefresherRun) says when the last run
finished. No finished run for three intervals (REFRESHER_INTERVAL_SECONDS)
while grants depend on it, or none ever: the tokens are not being refreshed
and the connections die within hours, so the list says so in red.

A fixed number of queries (one aggregate per kind of grant, one for the last
run), whatever the number of accounts, credentials or runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib import admin
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from .conf import app_settings
from .kinds import KINDS
from .models import ALMCredential, GrantStatus, RefresherRun

# A run missed now and then is normal (a deploy, a slow pass); three in a row means nobody runs the refresher.
STALE_AFTER_INTERVALS = 3



def health_rules(*, account: str = "") -> dict[str, Q]:
    """Each health's rule; `account` is the path from the grant to its ALM account ("account__" for a person's)."""
    refused = Q(**{f"{account}client_refused_at__isnull": False})
    return {
        "connected": Q(status=GrantStatus.CONNECTED, failing_since__isnull=True) & ~refused,
        "needs_reauthorization": Q(status=GrantStatus.NEEDS_REAUTHORIZATION) & ~refused,
        "failing": (Q(status=GrantStatus.ERROR) | Q(status=GrantStatus.CONNECTED, failing_since__isnull=False))
        & ~refused,
        "client_refused": refused & ~Q(status=GrantStatus.NOT_CONNECTED),
    }


HEALTH = health_rules()  # of the accounts' own connections


def _rules_of(kind) -> dict[str, Q]:
    # One Jira refused stays refused when its person is made inactive (services.connection), but nobody has to
    # re-authorize a grant nobody may use (an inactive person's), so only usable ones "need re-authorization".
    rules = health_rules(account=kind.account_path)
    return {**rules, "needs_reauthorization": rules["needs_reauthorization"] & kind.usable()}


RULES = {key: _rules_of(kind) for key, kind in KINDS.items()}


def rules_for(model) -> dict[str, Q]:
    return RULES[model.grant_kind]

# (singular, plural) of each health, as the summary says it: "1 needs re-authorization", "2 need ...".
HEALTH_WORDS = {
    "connected": ("connected", "connected"),
    "needs_reauthorization": ("needs re-authorization", "need re-authorization"),
    "failing": ("failing", "failing"),
    "client_refused": ("refused by Jira: link removed or secret changed",
                       "refused by Jira: link removed or secret changed"),
}


class GrantHealthFilter(admin.SimpleListFilter):
    """The list filter each count of the summary links to (?health=...), on accounts and on user credentials."""

    title = "connection health"
    parameter_name = "health"

    def lookups(self, request, model_admin):
        return [("connected", "Connected"), ("needs_reauthorization", "Needs re-authorization"),
                ("failing", "Failing"), ("client_refused", "Link removed or secret changed in Jira")]

    def queryset(self, request, queryset):
        rule = rules_for(queryset.model).get(self.value())
        return queryset if rule is None else queryset.filter(rule)


@dataclass(frozen=True)
class HealthCount:
    """One health, counted for each kind of grant."""

    accounts: int
    people: int

    @property
    def total(self) -> int:
        return self.accounts + self.people


@dataclass(frozen=True)
class StatusSummary:
    counts: dict[str, HealthCount]  # by health (HEALTH's keys)
    kept_alive: int  # grants the refresher must keep refreshing
    last_run: RefresherRun | None  # the newest run that finished (only finished_at and host loaded)
    interval: timedelta
    now: datetime

    @property
    def stale(self) -> bool:
        """Tokens are not being refreshed: grants depend on the refresher and it has not finished lately (or ever)."""
        if not self.kept_alive:
            return False
        return self.last_run is None or self.now - self.last_run.finished_at > STALE_AFTER_INTERVALS * self.interval


def _aggregate(queryset, *, kept_alive: Q) -> tuple[dict[str, int], int]:
    names = {f"h_{health}": Count("pk", filter=rule) for health, rule in rules_for(queryset.model).items()}
    row = queryset.aggregate(**names, kept_alive=Count("pk", filter=kept_alive))
    return {health: row[f"h_{health}"] for health in HEALTH}, row["kept_alive"]


def status_summary(*, now: datetime | None = None) -> StatusSummary:
    """The counts, the last finished run and whether the refresher looks stopped: three queries."""
    # What stops working when the refresher does not run: the grants it keeps alive (kinds.GrantKind.kept_alive).
    accounts, accounts_alive = _aggregate(KINDS["account"].model.objects.order_by(),
                                          kept_alive=KINDS["account"].kept_alive())
    people, people_alive = _aggregate(KINDS["user"].model.objects.order_by(), kept_alive=KINDS["user"].kept_alive())
    last_run = (RefresherRun.objects.filter(finished_at__isnull=False).order_by("-finished_at", "-pk")
                .only("finished_at", "host").first())
    return StatusSummary(
        counts={health: HealthCount(accounts[health], people[health]) for health in HEALTH},
        kept_alive=accounts_alive + people_alive,
        last_run=last_run,
        interval=timedelta(seconds=app_settings.REFRESHER_INTERVAL_SECONDS),
        now=now or timezone.now(),
    )


# --- in the administrator's words ---------------------------------------------------------------------------


def _n(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def duration(delta: timedelta) -> str:
    """'less than a minute', '5 minutes', '3 hours', '2 days': the largest unit only."""
    if delta < timedelta(minutes=1):
        return "less than a minute"
    now = timezone.now()
    return timesince(now - delta, now, depth=1)


def every(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    if seconds % 60:
        return _n(seconds, "second", "seconds")
    return _n(seconds // 60, "minute", "minutes")


# refresh_tokens' default --window for a single run (its SINGLE_RUN_WINDOW): enough for a cron job every 5 minutes.
DEFAULT_RUN_WINDOW_MINUTES = 15


def _cron_minutes(interval: timedelta) -> int:
    return min(60, max(1, int(interval.total_seconds()) // 60))


def cron_schedule(interval: timedelta) -> str:
    """The cron schedule closest to the interval, never slower than it (cron counts whole minutes)."""
    minutes = _cron_minutes(interval)
    if minutes >= 60:
        return "0 * * * *"
    return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"


def cron_options(interval: timedelta) -> str:
    """What the cron line adds to refresh_tokens at that schedule: a window of three runs (as --loop takes), when
    the default window would let a token expire between two runs (a job every 30 minutes needs 90)."""
    window = 3 * _cron_minutes(interval)
    return f" --window {window}" if window > DEFAULT_RUN_WINDOW_MINUTES else ""


def last_run_text(summary: StatusSummary) -> str:
    run = summary.last_run
    if run is None:
        return "No refresh run has finished yet."
    ago = duration(max(summary.now - run.finished_at, timedelta(0)))
    return f"Last refresh run {ago} ago on {run.host}."


def admin_summary(request, admin_site) -> dict:
    """What templates/admin/alm_accounts/almaccount/change_list.html shows, links included."""
    summary = status_summary()
    accounts_url = reverse(f"{admin_site.name}:alm_accounts_almaccount_changelist")
    credential_admin = admin_site._registry.get(ALMCredential)
    # A count links to people's credentials only for those who may see that list.
    people_url = (reverse(f"{admin_site.name}:alm_accounts_almcredential_changelist")
                  if credential_admin is not None and credential_admin.has_view_permission(request) else "")
    categories = []
    for health, count in summary.counts.items():
        if health == "client_refused" and not count.total:
            continue  # rare: shown only while it is there
        singular, plural = HEALTH_WORDS[health]
        query = f"?{GrantHealthFilter.parameter_name}={health}"
        categories.append({
            "health": health,
            "headline": _n(count.total, singular, plural),
            "parts": [
                {"text": _n(count.accounts, "account", "accounts"),
                 "url": accounts_url + query if count.accounts else ""},
                {"text": _n(count.people, "person", "people"),
                 "url": people_url + query if count.people and people_url else ""},
            ],
        })
    last = summary.last_run
    return {
        "categories": categories,
        "last_run": last_run_text(summary),
        "last_run_at": last.finished_at if last is not None else None,
        "stale": summary.stale,
        "never_ran": last is None,
        "silent_for": duration(summary.now - last.finished_at) if last is not None else "",
        "depending": (f"{_n(summary.kept_alive, 'connection', 'connections')} to Jira "
                      f"{'depends' if summary.kept_alive == 1 else 'depend'} on it"),
        "interval": every(summary.interval),
        "cron_schedule": cron_schedule(summary.interval),
        "cron_options": cron_options(summary.interval),
    }
