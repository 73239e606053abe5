"""Call Jira's REST API as the product does, and print Jira's answer: see what the product sees.

    manage.py jira_call "Jira - Core Banking" GET /rest/api/2/myself --as alice
    manage.py jira_call 3 GET /rest/api/2/search --param jql="project = CB" --param maxResults=5
    manage.py jira_call "Jira - Core Banking" POST /rest/api/2/issue --as alice \\
        --data '{"fields": {"project": {"key": "CB"}, "summary": "Hello", "issuetype": {"name": "Task"}}}'

The call goes through services.jira_request: as the person named with --as (their own Jira connection, or
the account's connection per the account's policy), else as the account's own connection; with the same
token refresh, retries and path checks as the product. Who it acted as is said on stderr; Jira's JSON
answer goes to stdout (pretty printed), so `... 2>/dev/null | jq` works.

Exit codes:
    0    Jira answered with success; its answer is on stdout
    1    the call failed (Jira's error, Jira unreachable, nobody may act for that person): on stderr
    2    bad arguments: unknown account or user, an invalid method, path, JSON or --param
"""

from __future__ import annotations

import contextlib
import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from alm_accounts import services
from alm_accounts.models import ALMAccount
from alm_accounts.services.jira_calls import METHODS

ACTOR = "manage.py jira_call"


class Command(BaseCommand):
    help = (
        "Call Jira's REST API for an ALM account, as a person (--as) or as the account's own connection, and "
        "print Jira's JSON answer. Exit codes: 0 success; 1 the call failed; 2 bad arguments."
    )

    def add_arguments(self, parser):
        parser.add_argument("account", metavar="ACCOUNT", help="The ALM account's name or id.")
        parser.add_argument("method", metavar="METHOD", help=f"The HTTP method: {', '.join(sorted(METHODS))}.")
        parser.add_argument("path", metavar="PATH", help="The REST path after the Jira base URL, e.g. "
                                                         "/rest/api/2/myself.")
        parser.add_argument("--as", dest="username", metavar="USERNAME",
                            help="Act as this person (their own Jira connection, or per the account's policy).")
        parser.add_argument("--data", metavar="JSON", help="The JSON body to send.")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                            help="A query parameter; repeat for several (a repeated name is sent repeatedly).")

    def handle(self, *args, account, method, path, username, data, param, verbosity, **options):
        account = self._account(account)
        user = self._user(username) if username is not None else None
        verb = method.upper()
        if verb not in METHODS:
            raise CommandError(f"Unknown method {method!r}: use one of {', '.join(sorted(METHODS))}.", returncode=2)
        body = self._json(data) if data is not None else None
        params = self._params(param)

        try:
            answer = services.jira_request(account=account, method=verb, path=path, user=user, json=body,
                                           params=params or None, actor=ACTOR)
        except services.InvalidJiraPath as exc:
            raise CommandError(str(exc), returncode=2) from None
        except services.ServiceError as exc:
            self.stderr.write(self.style.ERROR(str(exc)))
            raise SystemExit(1) from None
        if verbosity >= 1:
            # Who Jira saw acting, on stderr so that stdout stays Jira's JSON. Looked up again after the call
            # (jira_request returns Jira's answer only); a person deactivated meanwhile just goes unnamed.
            with contextlib.suppress(services.ServiceError):
                identity = services.jira_identity(account=account, user=user)
                self.stderr.write(f"{verb} {path.split('?', 1)[0]} on {account.name}, {identity.description}: OK")
        self.stdout.write(json.dumps(answer, indent=2, ensure_ascii=False, sort_keys=False))

    @staticmethod
    def _account(value: str) -> ALMAccount:
        account = ALMAccount.objects.filter(name=value).first()
        # isascii(): isdigit() also accepts "²", which int() refuses; a number longer than any id matches none.
        if account is None and value.isascii() and value.isdigit() and len(value) <= 18:
            account = ALMAccount.objects.filter(pk=int(value)).first()
        if account is None:
            raise CommandError(f"No ALM account named or numbered {value!r}.", returncode=2)
        return account

    @staticmethod
    def _user(username: str):
        model = get_user_model()
        user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user {username!r}.", returncode=2)
        return user

    @staticmethod
    def _json(text: str):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CommandError(f"--data is not valid JSON: {exc}.", returncode=2) from None

    @staticmethod
    def _params(pairs: list[str]) -> dict:
        params: dict[str, str | list[str]] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or not name:
                raise CommandError(f"--param must be NAME=VALUE (got {pair!r}).", returncode=2)
            if name in params:
                previous = params[name]
                params[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                params[name] = value
        return params
