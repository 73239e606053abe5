"""The rows tests start from: people, ALM accounts and people's credentials, built the way the app stores them.

factory_boy factories instead of a builder per test file. Saved through the ORM, so secrets and tokens are
encrypted as in real rows (SecretField), and every field a test does not name has one default here.

- `UserFactory(username="alice")`: a staff person without ALM permissions (`permissions=[codename, ...]` adds
  some); unique by username (asking twice gives the same person).
- `AccountFactory(name=..., connected=True, provider="dc" | "cloud")`: an ALM account. `connected=True` (the
  default) holds a pair of tokens named after the account (ACCESSTOKEN-<name>-old / REFRESHTOKEN-<name>-old),
  expiring in `expires_in` (an hour: not due yet; None: expiry unknown), connected a day ago; `status=` another
  status keeps the tokens (a broken grant still holds its pair) except NOT_CONNECTED; `failing=True` has
  refreshes failing since 12 minutes. `connected=False`: never connected, no token. `provider="cloud"`: a Jira
  Cloud site using the deployment's Atlassian app.
- `CredentialFactory(account=..., user__username="alice")`: a person's own grant on an account, the same way
  (tokens ACCESSTOKEN-<username> / REFRESHTOKEN-<username>, or `tokens="X"`: X-access / X-refresh; Jira user
  "<username>.j", or who `me=<Jira's /myself answer>` names);
  `needs_reauthorization=True` is the grant Jira refused.
- `jira=<FakeJira>` on either: the grant is also made at the fake Jira (tests/doubles/fake_jira.py), and the row
  holds the pair Jira issued, so a refresh really rotates it.
- `create_accounts(fake, count)`: many connected accounts at the fake Jira at once (bulk), for the refresher.
"""

from __future__ import annotations

import re
from datetime import timedelta

import factory
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from factory.django import DjangoModelFactory

from alm_accounts.models import ALMAccount, ALMCredential

Status = ALMAccount.Status
JIRA = "https://jira.example.com/jira"  # the Jira of the `responses` tests (tests/conftest.py JIRA)
CLIENT_SECRET = "CLIENTSECRET-7f3a9c1e5b"  # tests/conftest.py CLIENT_SECRET: leak tests search for it
CLOUD_SITE = "https://kendis-demo.atlassian.net"  # tests/conftest.py CLOUD_SITE


def slug(name: str) -> str:
    return re.sub(r"\W+", "", name)


def identity(me: dict) -> str:
    """Who Jira's /myself answer names: Cloud's account ID, or Data Center's user name."""
    return me.get("accountId") or me["name"]


def _holds_tokens(o) -> bool:
    return o.status != Status.NOT_CONNECTED


def _expiry(o):
    if not _holds_tokens(o) or o.expires_in is None:
        return None
    return timezone.now() + o.expires_in


class UserFactory(DjangoModelFactory):
    """A staff person (can log in to the admin), without any ALM permission unless `permissions` are given."""

    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"person-{n}")
    email = ""
    is_staff = True
    is_active = True
    password = factory.django.Password("pw-staff-123")

    @factory.post_generation
    def permissions(user, create, codenames, **kwargs):
        for codename in codenames or ():
            user.user_permissions.add(Permission.objects.get(codename=codename))


class _GrantFactory(DjangoModelFactory):
    """What both kinds of grant share: a status, a pair of tokens while they hold one, the times."""

    class Meta:
        abstract = True

    class Params:
        connected = True
        expires_in = timedelta(hours=1)  # in good standing: not due for a refresh yet
        failing = False
        needs_reauthorization = factory.Trait(status=Status.NEEDS_REAUTHORIZATION)
        jira = None  # a FakeJira: the grant is made there too
        jira_user = ""

    status = factory.Maybe("connected", Status.CONNECTED, Status.NOT_CONNECTED)
    token_expires_at = factory.LazyAttribute(_expiry)
    connected_at = factory.LazyAttribute(lambda o: timezone.now() - timedelta(days=1) if _holds_tokens(o) else None)
    # In use (issue 21): the refresher keeps it fresh. last_used_at=None makes an idle grant, only kept alive.
    last_used_at = factory.LazyAttribute(lambda o: timezone.now() if _holds_tokens(o) else None)
    failing_since = factory.Maybe("failing", factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=12)),
                                  None)

    @classmethod
    def _create(cls, model_class, *args, at_jira=None, **kwargs):
        grant = model_class(*args, **kwargs)
        if at_jira is not None:
            fake, key, identity = at_jira
            account = grant if isinstance(grant, ALMAccount) else grant.account
            grant.access_token, grant.refresh_token = fake.add_grant(
                key, redirect_uri=account.callback_url, client_id=account.client_id,
                client_secret=account.client_secret, **identity)
        grant.save()
        return grant


class AccountFactory(_GrantFactory):
    """An ALM account (Data Center unless provider="cloud"), connected unless connected=False."""

    class Meta:
        model = ALMAccount

    class Params:
        provider = "dc"

    name = factory.Sequence(lambda n: f"Jira {n:02}")
    authentication = factory.LazyAttribute(
        lambda o: ALMAccount.Authentication.JIRA_CLOUD_OAUTH2 if o.provider == "cloud"
        else ALMAccount.Authentication.JIRA_SERVER_OAUTH2)
    base_url = factory.LazyAttribute(
        lambda o: o.jira.base_url if o.jira else CLOUD_SITE if o.provider == "cloud" else JIRA)
    # Cloud accounts use the deployment's Atlassian app (settings), not a Client ID of their own.
    client_id = factory.LazyAttribute(lambda o: "" if o.provider == "cloud" else f"client-{slug(o.name)}")
    client_secret = factory.LazyAttribute(lambda o: None if o.provider == "cloud" else CLIENT_SECRET)
    client_secret_base_url = factory.LazyAttribute(lambda o: o.base_url if o.jira else "")
    access_token = factory.LazyAttribute(lambda o: f"ACCESSTOKEN-{slug(o.name)}-old" if _holds_tokens(o) else None)
    refresh_token = factory.LazyAttribute(
        lambda o: f"REFRESHTOKEN-{slug(o.name)}-old" if _holds_tokens(o) else None)
    token_scope = factory.LazyAttribute(
        lambda o: "" if not _holds_tokens(o) else "read:jira-work offline_access" if o.provider == "cloud"
        else "ADMIN")
    connected_as_name = factory.LazyAttribute(lambda o: o.jira_user)
    at_jira = factory.LazyAttribute(
        lambda o: (o.jira, o.name, {"user": o.jira_user, "cloud": o.provider == "cloud"}) if o.jira else None)


class CredentialFactory(_GrantFactory):
    """A person's own grant on an ALM account, connected unless connected=False."""

    class Meta:
        model = ALMCredential

    class Params:
        me = None  # Jira's /myself answer for this grant: who it acts as
        tokens = None  # "X": the pair is X-access / X-refresh

    account = factory.SubFactory(AccountFactory)
    user = factory.SubFactory(UserFactory)
    access_token = factory.LazyAttribute(
        lambda o: None if not _holds_tokens(o) else f"{o.tokens}-access" if o.tokens
        else f"ACCESSTOKEN-{o.user.username}")
    refresh_token = factory.LazyAttribute(
        lambda o: None if not _holds_tokens(o) else f"{o.tokens}-refresh" if o.tokens
        else f"REFRESHTOKEN-{o.user.username}")
    token_scope = factory.LazyAttribute(lambda o: "WRITE" if _holds_tokens(o) else "")
    connected_as_name = factory.LazyAttribute(
        lambda o: o.jira_user or (identity(o.me) if o.me else f"{o.user.username}.j"))
    connected_as_display_name = factory.LazyAttribute(
        lambda o: o.me["displayName"] if o.me else o.user.username.title())
    # The fake Jira's grant of a person: "<account name>/<username>", as Jira's user of the same name.
    at_jira = factory.LazyAttribute(
        lambda o: (o.jira, f"{o.account.name}/{o.user.username}",
                   {"user": o.jira_user or o.user.username, "display_name": o.user.username.title()})
        if o.jira else None)


def grant_key(grant: ALMAccount | ALMCredential) -> str:
    """The key of a factory-made grant at the fake Jira."""
    if isinstance(grant, ALMAccount):
        return grant.name
    return f"{grant.account.name}/{grant.user.username}"


def create_accounts(fake, count: int, *, client_id: str = "cmd-client",
                    client_secret: str = "CLIENTSECRET-cmd-8a7b") -> dict[int, str]:
    """`count` connected accounts due for a refresh (5 minutes left), each with its grant k00, k01... at `fake`,
    made at once (bulk). Returns {account id: grant key}, in the order the refresher takes them (same expiry: by id).
    """
    now = timezone.now()
    accounts = [
        ALMAccount(name=f"Jira {i:02}", base_url=fake.base_url, client_id=client_id, client_secret=client_secret,
                   client_secret_base_url=fake.base_url, token_expires_at=now + timedelta(minutes=5),
                   token_scope="ADMIN", status=Status.CONNECTED, connected_at=now - timedelta(days=1),
                   last_used_at=now)
        for i in range(count)
    ]
    for i, account in enumerate(accounts):
        account.access_token, account.refresh_token = fake.add_grant(
            f"k{i:02}", redirect_uri=account.callback_url, client_id=client_id, client_secret=client_secret)
    ALMAccount.objects.bulk_create(accounts)
    return {pk: f"k{int(name.split()[1]):02}" for pk, name in ALMAccount.objects.order_by("pk").values_list(
        "pk", "name")}


def connect_account(fake, name: str, *, expires_in: timedelta | None, client_id: str = "cred-client",
                    client_secret: str = "CLIENTSECRET-cred-3c4d", **fields) -> ALMAccount:
    """An ALM account connected at the fake Jira as Jira user "jadmin-<name>", its access token expiring in
    `expires_in` (None: unknown); its grant key at Jira is its name."""
    return AccountFactory(name=name, jira=fake, jira_user=f"jadmin-{name}", expires_in=expires_in,
                          client_id=client_id, client_secret=client_secret, **fields)


def connect_person(fake, account: ALMAccount, username: str, *, expires_in: timedelta | None,
                   active: bool = True) -> ALMCredential:
    """`username`'s own credential on `account` at the fake Jira (Jira user of the same name), its grant key
    "<account>/<username>"."""
    return CredentialFactory(account=account, user=UserFactory(username=username, is_active=active), jira=fake,
                             jira_user=username, expires_in=expires_in, token_scope="ADMIN")
