"""Issue 20, item 2 - one place for each difference.

What differs between the kinds of grant is one class each (alm_accounts.kinds), what differs between Jira Data
Center and Jira Cloud is one provider each (alm_accounts.providers), the models know neither, and a grant's owner
reads one reconnect hint wherever the product tells them to connect again (alm_accounts.messages).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import alm_accounts
from alm_accounts import services
from alm_accounts.models import ALMCredential
from alm_accounts.providers import Cloud, DataCenter, Provider, provider_for
from alm_accounts.services import GrantRef, RefreshOutcome
from tests.conftest import staff_user

APP = Path(alm_accounts.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """The modules a file imports, with `import`, `from ... import` or importlib.import_module("...")."""
    package = "alm_accounts" if path.parent == APP else "alm_accounts." + path.parent.relative_to(APP).as_posix()
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value))
    return names


def test_the_models_import_neither_the_services_nor_the_providers():
    imported = imported_modules(APP / "models.py")
    assert not sorted(name for name in imported
                      if name.startswith(("alm_accounts.services", "alm_accounts.providers")))


def kind_compared_by_name(path: Path) -> list[str]:
    """Comparisons of a grant's kind (grant.grant_kind, ref.kind) with a name: what kinds.py makes unnecessary."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(side, ast.Attribute) and side.attr in ("grant_kind", "kind") for side in sides) and \
                    any(isinstance(side, ast.Constant) and side.value in ("account", "user") for side in sides):
                found.append(f"{path.relative_to(APP)}:{node.lineno}")
    return found


def test_no_module_tests_the_kind_of_grant_by_its_name():
    """A third kind of connection is one new class in kinds.py, not one more branch in every service."""
    found = [where for path in sorted(APP.rglob("*.py")) if "migrations" not in path.parts
             for where in kind_compared_by_name(path)]
    assert found == []


def test_data_center_and_cloud_are_each_a_provider_of_their_own():
    assert issubclass(DataCenter, Provider) and issubclass(Cloud, Provider)
    assert not issubclass(Cloud, DataCenter) and not issubclass(DataCenter, Cloud)


def test_each_account_gets_the_provider_of_its_authentication(account, cloud_account):
    assert isinstance(provider_for(account), DataCenter)
    assert isinstance(provider_for(cloud_account), Cloud)


@pytest.mark.django_db
def test_the_reconnect_hint_is_the_same_for_a_refresh_and_for_a_caller_asking_for_a_token(account):
    """An unconnected grant: the refresher's line and an on-demand caller's error say the one hint, naming where."""
    credential = ALMCredential.objects.create(account=account, user=staff_user("alice"))

    account_refresh = services.refresh_grant(grant=GrantRef.of(account), actor="test")
    person_refresh = services.refresh_grant(grant=GrantRef.of(credential), actor="test")
    with pytest.raises(services.ServiceError) as account_token:
        services.valid_access_token(account=account)
    with pytest.raises(services.ServiceError) as person_token:
        services.valid_access_token(account=credential)

    assert account_refresh.outcome is person_refresh.outcome is RefreshOutcome.NOT_CONNECTED
    assert account_refresh.message == "no refresh token: click Get Auth Token on the ALM account"
    assert str(account_token.value) == "Not connected to Jira: click Get Auth Token on the ALM account."
    assert person_refresh.message == f"no refresh token: reconnect under My ALM Credentials ({account.name})"
    assert str(person_token.value) == f"Not connected to Jira: reconnect under My ALM Credentials ({account.name})."


def authentication_compared_with_a_choice(path: Path) -> list[str]:
    """Comparisons of an account's authentication with one of its choices (ALMAccount.Authentication.X, or its
    value): what the providers (and models.CLOUD_AUTHENTICATIONS) make unnecessary."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names_authentication = any(
                (isinstance(side, ast.Attribute) and side.attr == "authentication")
                or (isinstance(side, ast.Call) and any(isinstance(a, ast.Constant) and a.value == "authentication"
                                                       for a in side.args))
                for side in sides)
            a_choice = any(
                (isinstance(side, ast.Attribute) and isinstance(side.value, ast.Attribute)
                 and side.value.attr == "Authentication")
                or (isinstance(side, ast.Constant) and isinstance(side.value, str) and side.value.startswith("jira_"))
                for side in sides)
            if names_authentication and a_choice:
                found.append(f"{path.relative_to(APP)}:{node.lineno}")
    return found


def test_no_module_tests_the_authentication_by_its_name():
    """Issue 22: a service account is one provider each (providers/service_accounts.py), not `authentication ==`
    branches in the services and screens."""
    found = [where for path in sorted(APP.rglob("*.py")) if "migrations" not in path.parts
             for where in authentication_compared_with_a_choice(path)]
    assert found == []


def test_each_service_account_authentication_gets_its_own_provider(db):
    from alm_accounts.models import ALMAccount
    from alm_accounts.providers import CloudServiceAccount, DataCenterServiceAccount

    dc = ALMAccount(authentication=ALMAccount.Authentication.JIRA_SERVER_SERVICE_ACCOUNT)
    cloud = ALMAccount(authentication=ALMAccount.Authentication.JIRA_CLOUD_SERVICE_ACCOUNT)
    assert isinstance(provider_for(dc), DataCenterServiceAccount) and isinstance(provider_for(dc), DataCenter)
    assert isinstance(provider_for(cloud), CloudServiceAccount) and isinstance(provider_for(cloud), Cloud)
    assert cloud.is_cloud and not dc.is_cloud
