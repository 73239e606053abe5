"""Health and metrics: /healthz and /readyz for load balancers and orchestrators, /metrics for Prometheus.

- /healthz: "ok" while the process serves requests. No database, nothing else.
- /readyz: also the database (the queries below, a short statement timeout on
  PostgreSQL) and the refresher's heartbeat, by the rule of the ALM Accounts
  list (status.StatusSummary.stale): grants depend on the refresher and no run
  has finished for three REFRESHER_INTERVAL_SECONDS (or none ever) → 503.
- /metrics: the Prometheus text format, behind `Authorization: Bearer
  <METRICS_TOKEN>`; 404 (off) while METRICS_TOKEN is unset.

ProbeMiddleware, first in MIDDLEWARE, answers /healthz and /readyz itself,
before SecurityMiddleware's HTTPS redirect and before anything calls
request.get_host(): a load balancer's plain-HTTP probe addressed to the pod's
IP gets its answer, not a 301 or a DisallowedHost 400. /metrics is an ordinary
view behind the redirect and ALLOWED_HOSTS: its numbers describe the
deployment, so they travel over HTTPS (or from inside, with the proxy's
X-Forwarded-Proto header).

Nothing here names an account, a URL, a person or a host: only states, counts,
ages and timestamps. Every metric is computed from the database at scrape time
(a fresh CollectorRegistry per request, never the process-global one): several
gunicorn workers on several hosts all answer the same numbers, in a fixed
number of aggregate queries whatever the number of grants. The rate-limit
counters (kendis_jira_rate_limited_responses_total,
kendis_jira_near_limit_responses_total) too: every process that calls Jira (web
workers, the refresher and its worker processes) adds its counts to the
RateLimitCount rows within a few seconds (services.rate_limits.CountsWriter),
and the process scraped writes its own first, so it is never behind itself.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timedelta

from django.db import Error as DatabaseError
from django.db import connection, transaction
from django.db.models import Count, Min, Q, Sum
from django.http import Http404, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from . import selectors
from .conf import app_settings
from .kinds import KINDS
from .models import Alert, GrantStatus, RateLimitCount, RefreshDay, RefresherRun
from .providers import PROVIDERS
from .services.rate_limits import write_counts
from .status import HEALTH, HealthCount, StatusSummary, rules_for, status_summary

logger = logging.getLogger(__name__)

# A probe waits a few seconds at most; a database that takes longer to answer "SELECT" is not ready.
DATABASE_TIMEOUT_MS = 2000
# "Recent runs" in /metrics: the runs that finished within this window.
RECENT = timedelta(hours=1)
RUN_OUTCOMES = ("ok", "failed", "stopped", "crashed")  # RefresherRun.outcome (refresh_tokens' heartbeat)
RUN_RESULTS = ("tried", "refreshed", "failed", "needs_reauthorization", "client_refused")  # RefresherRun's counts
Signal = RateLimitCount.Signal


# --------------------------------------------------------------------------
# /healthz and /readyz
# --------------------------------------------------------------------------


def _probe_answer(response: HttpResponse) -> HttpResponse:
    # Django logs every 5xx on the "django.request" logger at ERROR, which mails ADMINS: a probe every few
    # seconds while the database is down would mail them every few seconds. readyz logs its own warning instead.
    response._has_been_logged = True
    return response


@never_cache
@require_safe
def healthz(request):
    """The process is up and answers requests: nothing else is checked (a liveness probe)."""
    return HttpResponse("ok", content_type="text/plain; charset=utf-8")


def _readiness(now: datetime) -> StatusSummary:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Local to this transaction: the persistent connection keeps its own timeout for every other request.
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(DATABASE_TIMEOUT_MS)])
        return status_summary(now=now)


def _seconds_since_last_run(summary: StatusSummary) -> int | None:
    if summary.last_run is None:
        return None
    return max(0, int((summary.now - summary.last_run.finished_at).total_seconds()))


@never_cache
@require_safe
def readyz(request):
    """Ready to serve: the database answers and the refresher keeps the tokens alive (a readiness probe)."""
    try:
        summary = _readiness(timezone.now())
    except DatabaseError as exc:
        # The class only: a driver's message may name the database host and user.
        logger.warning("Readiness: database unavailable (%s).", type(exc).__name__)
        return _probe_answer(JsonResponse({"status": "database unavailable"}, status=503))
    since = _seconds_since_last_run(summary)
    if summary.stale:
        logger.warning("Readiness: refresher stale (last run finished %s).",
                       "never" if since is None else f"{since} s ago")
        return _probe_answer(JsonResponse({"status": "refresher stale", "seconds_since_last_refresh_run": since},
                                          status=503))
    return JsonResponse({"status": "ok", "seconds_since_last_refresh_run": since})


PROBES = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Answers /healthz and /readyz before every other middleware (put it first in MIDDLEWARE).

    Before SecurityMiddleware: no HTTPS redirect for a load balancer probing over plain HTTP. Before
    CommonMiddleware and CSRF: request.get_host() is never called, so a probe addressed to the pod's IP
    (a Host that is not in ALLOWED_HOSTS) is answered too. No session, no user, no cookie.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        return probe(request)


# --------------------------------------------------------------------------
# /metrics
# --------------------------------------------------------------------------


def _grant_figures(queryset, *, kept_alive: Q, now: datetime) -> dict:
    """One aggregate query: counts by status and by health, kept alive (and of them in use: selectors.in_use), the
    earliest expiry of a live token."""
    statuses = {f"status_{status}": Count("pk", filter=Q(status=status)) for status in GrantStatus.values}
    healths = {f"health_{health}": Count("pk", filter=rule) for health, rule in rules_for(queryset.model).items()}
    return queryset.order_by().aggregate(
        **statuses, **healths, kept_alive=Count("pk", filter=kept_alive),
        in_use=Count("pk", filter=kept_alive & selectors.in_use(now)),
        earliest_expiry=Min("token_expires_at", filter=kept_alive & Q(status=GrantStatus.CONNECTED)),
    )


def _gauge(name: str, documentation: str, samples) -> GaugeMetricFamily:
    """A gauge from {label values: value}; a sample whose value is None is left out (absent, not zero)."""
    labels = next(iter(samples), ())
    family = GaugeMetricFamily(name, documentation, labels=[label for label, _ in labels])
    for key, value in samples.items():
        if value is not None:
            family.add_metric([label_value for _, label_value in key], value)
    return family


def _by(label: str, values: dict) -> dict:
    """{value of `label`: number} as _gauge's samples."""
    return {((label, name),): number for name, number in values.items()}


def _refreshes_by_reason(row: dict | None) -> dict:
    successes, keepalives = (row["successes"] or 0, row["keepalives"] or 0) if row else (0, 0)
    return {"in_use": successes - keepalives, "keep_alive": keepalives}


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


class DeploymentCollector:
    """The numbers of one scrape, read from the database when collected: six queries, whatever the numbers."""

    def __init__(self, *, now: datetime):
        self.now = now

    def collect(self):
        now = self.now
        kinds = {key: _grant_figures(kind.model.objects.all(), kept_alive=kind.kept_alive(), now=now)
                 for key, kind in KINDS.items()}
        # Today's refreshes (UTC day) by kind: those of grants in use, and the keep-alives of idle ones.
        today = {row["grant_kind"]: row for row in RefreshDay.objects.filter(day=now.date()).order_by()
                 .values("grant_kind").annotate(successes=Sum("successes"), keepalives=Sum("keepalives"))}
        last = (RefresherRun.objects.filter(finished_at__isnull=False).order_by("-finished_at", "-pk")
                .only("started_at", "finished_at", "outcome", *RUN_RESULTS).first())
        recent = RefresherRun.objects.filter(finished_at__gte=now - RECENT).order_by().aggregate(
            **{f"runs_{outcome}": Count("pk", filter=Q(outcome=outcome)) for outcome in RUN_OUTCOMES},
            **{f"sum_{result}": Sum(result) for result in RUN_RESULTS},
        )
        pending = Q(email_state=Alert.Delivery.PENDING) | Q(webhook_state=Alert.Delivery.PENDING)
        alerts = Alert.objects.order_by().aggregate(pending=Count("pk", filter=pending),
                                                    oldest=Min("created_at", filter=pending))
        # The ALM Accounts list's rule for "tokens are not being refreshed", fed these numbers.
        summary = StatusSummary(
            counts={name: HealthCount(kinds["account"][f"health_{name}"], kinds["user"][f"health_{name}"])
                    for name in HEALTH},
            kept_alive=sum(row["kept_alive"] for row in kinds.values()),
            last_run=last, interval=timedelta(seconds=app_settings.REFRESHER_INTERVAL_SECONDS), now=now,
        )

        def per_kind(figure):
            return {(("kind", kind),): figure(row) for kind, row in kinds.items()}

        def expiry(row, convert):
            return None if row["earliest_expiry"] is None else convert(row["earliest_expiry"])

        yield _gauge("kendis_grants", "Jira grants by kind (account: an ALM account's own connection; user: a "
                     "person's own credential) and status.",
                     {(("kind", kind), ("status", status)): row[f"status_{status}"]
                      for kind, row in kinds.items() for status in GrantStatus.values})
        yield _gauge("kendis_grants_health", "Jira grants by kind and health, as the ALM Accounts list counts them "
                     "(failing: in error, or connected with refreshes failing; client_refused: Jira refuses the "
                     "account's client, its link was removed or its secret changed).",
                     {(("kind", kind), ("health", name)): row[f"health_{name}"]
                      for kind, row in kinds.items() for name in HEALTH})
        yield _gauge("kendis_grants_kept_alive", "Jira grants the refresher keeps alive.",
                     per_kind(lambda row: row["kept_alive"]))
        yield _gauge("kendis_grants_by_use", "Jira grants the refresher keeps alive, by use: in_use (the product "
                     "asked for a token within REFRESH_ACTIVE_WITHIN_HOURS: refreshed before expiry) or idle (one "
                     "keep-alive refresh every REFRESH_IDLE_KEEPALIVE_HOURS).",
                     {(("kind", kind), ("use", use)): number for kind, row in kinds.items()
                      for use, number in (("in_use", row["in_use"]), ("idle", row["kept_alive"] - row["in_use"]))})
        yield _gauge("kendis_token_refreshes_today", "Successful token refreshes since midnight UTC, by kind and "
                     "reason: in_use (a grant in use, or on demand) or keep_alive (an idle grant kept alive).",
                     {(("kind", kind), ("reason", reason)): number for kind in kinds
                      for reason, number in _refreshes_by_reason(today.get(kind)).items()})
        yield _gauge("kendis_access_token_earliest_expiry_timestamp_seconds", "When the first access token of a "
                     "connected grant expires (Unix time); absent without one.",
                     per_kind(lambda row: expiry(row, datetime.timestamp)))
        yield _gauge("kendis_access_token_earliest_expiry_seconds", "Seconds until the first access token of a "
                     "connected grant expires (negative: expired); absent without one.",
                     per_kind(lambda row: expiry(row, lambda moment: _seconds(moment - now))))

        yield _gauge("kendis_refresher_stale", "1 when grants depend on the refresher and no run finished for three "
                     "REFRESHER_INTERVAL_SECONDS (or ever): tokens are not being refreshed.", {(): int(summary.stale)})
        yield _gauge("kendis_refresher_seconds_since_last_run", "Seconds since the last refresher run finished (+Inf: "
                     "none ever did).", {(): float("inf") if last is None else _seconds(now - last.finished_at)})
        yield _gauge("kendis_refresher_interval_seconds", "REFRESHER_INTERVAL_SECONDS: how often the refresher is "
                     "meant to run.", {(): app_settings.REFRESHER_INTERVAL_SECONDS})
        if last is not None:
            yield _gauge("kendis_refresher_last_run_finished_timestamp_seconds", "When the last refresher run "
                         "finished (Unix time).", {(): last.finished_at.timestamp()})
            yield _gauge("kendis_refresher_last_run_duration_seconds", "How long the last refresher run took.",
                         {(): max(0.0, _seconds(last.finished_at - last.started_at))})
            yield _gauge("kendis_refresher_last_run_outcome", "1 for the outcome of the last refresher run, 0 for "
                         "the others.", _by("outcome", {name: int(last.outcome == name) for name in RUN_OUTCOMES}))
            yield _gauge("kendis_refresher_last_run_grants", "Grants of the last refresher run, by result.",
                         _by("result", {result: getattr(last, result) for result in RUN_RESULTS}))
        yield _gauge("kendis_refresher_recent_runs", "Refresher runs that finished within the last hour, by outcome.",
                     _by("outcome", {name: recent[f"runs_{name}"] for name in RUN_OUTCOMES}))
        yield _gauge("kendis_refresher_recent_grants", "Grants of the refresher runs that finished within the last "
                     "hour, added up by result.", _by("result", {name: recent[f"sum_{name}"] or 0
                                                                 for name in RUN_RESULTS}))

        yield _gauge("kendis_alerts_pending", "Alerts (a connection broke or recovered) waiting to be delivered by "
                     "e-mail or webhook.", {(): alerts["pending"]})
        yield _gauge("kendis_alerts_pending_oldest_age_seconds", "Age of the oldest alert waiting to be delivered "
                     "(0: none waits).", {(): 0 if alerts["oldest"] is None else _seconds(now - alerts["oldest"])})


class RateLimitCollector:
    """Rate-limited answers (HTTP 429) and near-limit signals from Jira, per provider, counted by every process
    (the RateLimitCount rows): this process's own counts written first, then one query."""

    def collect(self):
        write_counts()  # a failure is logged there; the rows still say what the others wrote
        counts = {(signal, provider, reason): number for signal, provider, reason, number in
                  RateLimitCount.objects.order_by().values_list("signal", "provider", "reason", "count")}
        providers = sorted(provider.metrics_name for provider in PROVIDERS.values())
        limited = CounterMetricFamily(
            "kendis_jira_rate_limited_responses", "Answers of Jira (or Atlassian's gateway or token endpoint) refusing "
            "a call for a rate limit (HTTP 429), by provider and the limit named (RateLimit-Reason; unspecified: "
            "none named), counted by every process of the deployment.", labels=["provider", "reason"])
        near = CounterMetricFamily(
            "kendis_jira_near_limit_responses", "Answers of Jira saying a rate limit is near (X-RateLimit-NearLimit, "
            "or under 20 % of X-RateLimit-Limit left), by provider, counted by every process of the deployment.",
            labels=["provider"])
        for provider in providers:
            near.add_metric([provider], counts.get((Signal.NEAR_LIMIT, provider, ""), 0))
            if not any(key[0] == Signal.RATE_LIMITED and key[1] == provider for key in counts):
                limited.add_metric([provider, "unspecified"], 0)
        for (signal, provider, reason), number in sorted(counts.items()):
            if signal == Signal.RATE_LIMITED:
                limited.add_metric([provider, reason], number)
        yield limited
        yield near


def _bearer_token(request) -> str:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _unauthorized(*, invalid: bool) -> HttpResponse:
    response = HttpResponse("Authentication required.\n", status=401, content_type="text/plain; charset=utf-8")
    # RFC 6750: a wrong token is "invalid_token"; a missing one gets the bare challenge.
    response["WWW-Authenticate"] = 'Bearer realm="metrics"' + (', error="invalid_token"' if invalid else "")
    return response


@never_cache
@require_safe
def metrics(request):
    """The Prometheus text format (OpenMetrics when the scraper asks for it), for the holder of METRICS_TOKEN."""
    expected = app_settings.METRICS_TOKEN
    if not expected:
        raise Http404("Metrics are off.")
    given = _bearer_token(request)
    if not given:
        return _unauthorized(invalid=False)
    # Constant time: the comparison must not tell a guesser how many leading characters were right.
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return _unauthorized(invalid=True)
    registry = CollectorRegistry(auto_describe=False)  # per request: the numbers come from the database
    registry.register(DeploymentCollector(now=timezone.now()))
    registry.register(RateLimitCollector())
    encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
