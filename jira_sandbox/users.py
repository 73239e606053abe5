"""The sandbox's Jira users: who they are, how `sandbox_setup` creates them, how Jira shows them.

Two people are enough to play user-based sync: the Jira administrator, who
also creates application links, and a normal Jira user, who can only consent
to an application on their own behalf. Passwords come from the environment
(see settings.py) and are listed on the login page: this is a dev-only stand-in.
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model

ADMIN_USERNAME = "jira-admin"
USER2_USERNAME = "jira-user2"


@dataclass(frozen=True)
class SandboxUser:
    username: str
    first_name: str
    last_name: str
    password_setting: str  # the settings name, read late so tests may override it
    is_admin: bool

    @property
    def display_name(self):
        return f"{self.first_name} {self.last_name}"

    @property
    def email(self):
        return f"{self.username}@sandbox.invalid"

    @property
    def password(self):
        return getattr(settings, self.password_setting)

    @property
    def role(self):
        return "Jira administrator" if self.is_admin else "Jira user"


SANDBOX_USERS = (
    SandboxUser(ADMIN_USERNAME, "Jira Sandbox", "Admin", "SANDBOX_ADMIN_PASSWORD", is_admin=True),
    SandboxUser(USER2_USERNAME, "Jira Sandbox User", "Two", "SANDBOX_USER2_PASSWORD", is_admin=False),
)


def ensure(sandbox_user):
    """Create or update the user, password included, so it always matches the environment. Returns (user, created)."""
    user, created = get_user_model().objects.update_or_create(
        username=sandbox_user.username,
        defaults={
            "first_name": sandbox_user.first_name,
            "last_name": sandbox_user.last_name,
            "email": sandbox_user.email,
            # Only the administrator may open /admin/ (application links); a normal
            # Jira user still logs in and consents, which needs no more than a login.
            "is_staff": sandbox_user.is_admin,
            "is_superuser": sandbox_user.is_admin,
            "is_active": True,
        },
    )
    user.set_password(sandbox_user.password)
    user.save()
    return user, created


def display_name(user):
    return user.get_full_name() or user.username


def jira_key(user):
    """Jira 8+ gives new users an opaque key, unrelated to the username."""
    return f"JIRAUSER{10000 + user.pk}"


def user_json(request, user):
    """The user as Jira's REST API shows it wherever a user appears (reporter, assignee, myself)."""
    base_url = request.build_absolute_uri("/").rstrip("/")
    return {
        "self": f"{base_url}/rest/api/2/user?username={user.username}",
        "key": jira_key(user),
        "name": user.username,
        "emailAddress": user.email,
        "displayName": display_name(user),
        "active": user.is_active,
    }
