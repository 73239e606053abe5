"""Who the sandbox's Jira users are on Atlassian Cloud: an opaque accountId, never a user name or key."""

import uuid

from jira_sandbox import users

# Fixed so tests and demos can rely on them; shaped like Atlassian's older 24-character account ids.
ACCOUNT_IDS = {
    users.ADMIN_USERNAME: "5b10a2844c20165700ede21g",
    users.USER2_USERNAME: "5b10ac8d82e05b22cc7d4ef5",
}
_OTHER_USERS = uuid.UUID("0b6f3c1e-2a51-4f8e-9d7c-6e5a4b3c2d1f")


def account_id(user):
    """The user's accountId; users added later in the admin get a stable one of Atlassian's newer shape."""
    return ACCOUNT_IDS.get(user.username) or f"712020:{uuid.uuid5(_OTHER_USERS, str(user.pk))}"


def is_service_account(user):
    """Atlassian shows a service account (a non-human account) with accountType "app"."""
    return type(user).objects.filter(pk=user.pk, cloud_service_account__isnull=False).exists()


def user_json(site, user):
    """A user wherever Jira Cloud shows one (myself, reporter): `self` points at the site, as Cloud's links do."""
    account = account_id(user)
    avatar = f"https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net/{account}/48"
    return {
        "self": f"{site.url}/rest/api/3/user?accountId={account}",
        "accountId": account,
        "accountType": "app" if is_service_account(user) else "atlassian",
        "emailAddress": user.email,
        "avatarUrls": {"48x48": avatar},
        "displayName": users.display_name(user),
        "active": user.is_active,
        "timeZone": "UTC",
    }
