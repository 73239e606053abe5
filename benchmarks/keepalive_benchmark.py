#!/usr/bin/env python3
"""Token requests per simulated day with and without keep-alive (issue 21): the real due rule, the clock moved.

    .venv/bin/python benchmarks/keepalive_benchmark.py                      # 10,000 grants, 10 % in use, SQLite
    .venv/bin/python benchmarks/keepalive_benchmark.py --grants 2000 --in-use 0.25 --token-lifetime 7200
    .venv/bin/python benchmarks/keepalive_benchmark.py --database-url postgres://kendis:kendis@127.0.0.1:5432/kendis_bench

A population of ALM accounts' own connections (the rule is the same for people's credentials) is created in a
fresh database; the app's clock (django.utils.timezone.now) is moved by one refresher interval at a time over two
simulated days. At each pass the grants the refresher would take are read with the refresher's own query
(selectors.due_grants, window 15 minutes) and "refreshed" as a successful refresh leaves them (a new access token
for --token-lifetime seconds, last_refreshed_at now), without Jira: what is counted is how many token requests the
rule asks Jira for. The product uses the grants in use every hour (their last_used_at). "Before" is the rule before
issue 21 (every grant refreshed before its access token expires: selectors.expiring alone), on the same population.
The second day is counted (the first lets the population settle). Printed: token requests per day, in use and idle,
the most in one pass, and whether a grant in use was ever found with an expired token.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WINDOW = timedelta(minutes=15)
START = datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--in-use", type=float, default=0.10, help="share of the grants the product uses (0-1)")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="access token seconds (Jira: 3600 or 7200)")
    parser.add_argument("--interval", type=int, default=300, help="REFRESHER_INTERVAL_SECONDS")
    parser.add_argument("--keepalive-hours", type=int, default=24, help="REFRESH_IDLE_KEEPALIVE_HOURS")
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="kendis-keepalive-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "kendis_integration.settings_test"
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["REFRESH_IDLE_KEEPALIVE_HOURS"] = str(args.keepalive_hours)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.REFRESH_IDLE_KEEPALIVE_HOURS = args.keepalive_hours
    call_command("migrate", verbosity=0)
    print(f"{args.grants} grants, {args.in_use:.0%} in use, access tokens of {args.token_lifetime} s, a pass every "
          f"{args.interval} s, keep-alive every {args.keepalive_hours} h, {django.db.connection.vendor}")
    before = simulate(args, keepalive=False)
    after = simulate(args, keepalive=True)
    for label, result in (("before (refresh before expiry, every grant)", before),
                          ("after (idle grants kept alive only)", after)):
        print(f"{label}: {result['total']:,} token requests per day ({result['in_use']:,} for grants in use, "
              f"{result['idle']:,} for idle grants); at most {result['peak']:,} in one pass; "
              f"grants in use found expired when used: {result['expired_in_use']}; {result['seconds']:.1f} s")
    print(f"ratio after / before: {after['total'] / before['total']:.3f}")
    return 0


def simulate(args, *, keepalive: bool) -> dict:
    from django.utils import timezone

    from alm_accounts import selectors
    from alm_accounts.models import ALMAccount, GrantStatus

    clock = {"now": START}
    real_now = timezone.now
    timezone.now = lambda: clock["now"]
    started = time.monotonic()
    try:
        ALMAccount.objects.all().delete()
        lifetime = timedelta(seconds=args.token_lifetime)
        in_use_every = max(1, round(1 / args.in_use)) if args.in_use else 0
        grants = []
        for i in range(args.grants):
            # Each last refreshed at some moment of the last token lifetime: the refreshes already spread.
            refreshed = START - lifetime * ((i * 7919) % 1000) / 1000
            used = START if in_use_every and i % in_use_every == 0 else None
            grants.append(ALMAccount(name=f"Bench {i:05}", base_url="https://jira.example.com", client_id="c",
                                     status=GrantStatus.CONNECTED, refresh_token="RT", access_token="AT",
                                     connected_at=START - timedelta(days=30), last_refreshed_at=refreshed,
                                     token_expires_at=refreshed + lifetime, last_used_at=used))
        ALMAccount.objects.bulk_create(grants, batch_size=1000)
        in_use_ids = set(ALMAccount.objects.filter(last_used_at__isnull=False).values_list("pk", flat=True))
        step = timedelta(seconds=args.interval)
        counted = {"in_use": 0, "idle": 0, "peak": 0, "expired_in_use": 0}
        while clock["now"] < START + timedelta(days=2):
            clock["now"] += step
            now = clock["now"]
            if now.minute * 60 + now.second < args.interval:  # the product, every hour
                ALMAccount.objects.filter(pk__in=in_use_ids).update(last_used_at=now)
                counted["expired_in_use"] += ALMAccount.objects.filter(pk__in=in_use_ids,
                                                                       token_expires_at__lte=now).count()
            rule = (selectors.due(within=WINDOW, now=now) if keepalive
                    else selectors.expiring(now, WINDOW))
            due = list(selectors.refreshable_grants("account").filter(rule).values_list("pk", flat=True))
            if now > START + timedelta(days=1):
                used = sum(1 for pk in due if pk in in_use_ids)
                counted["in_use"] += used
                counted["idle"] += len(due) - used
                counted["peak"] = max(counted["peak"], len(due))
            for chunk in range(0, len(due), 900):
                ALMAccount.objects.filter(pk__in=due[chunk:chunk + 900]).update(
                    last_refreshed_at=now, token_expires_at=now + lifetime)
        counted["total"] = counted["in_use"] + counted["idle"]
        counted["seconds"] = time.monotonic() - started
        return counted
    finally:
        timezone.now = real_now


if __name__ == "__main__":
    sys.exit(main())
