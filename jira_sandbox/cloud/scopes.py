"""Atlassian's classic Jira scopes, as the consent screen describes them, and which operation needs which."""

READ_WORK = "read:jira-work"
WRITE_WORK = "write:jira-work"
READ_USER = "read:jira-user"
OFFLINE_ACCESS = "offline_access"

DESCRIPTIONS = {
    READ_WORK: "View Jira issue data",
    WRITE_WORK: "Create and manage issues",
    READ_USER: "View user profiles",
    "manage:jira-project": "Manage project settings",
    "manage:jira-configuration": "Manage Jira global settings",
    OFFLINE_ACCESS: "Maintain access to data you have given it access to",
}


def unknown(requested):
    return [scope for scope in requested if scope not in DESCRIPTIONS]


def site_scopes(granted):
    """What accessible-resources lists for a site: the product scopes, not offline_access (a token matter)."""
    return [scope for scope in granted if scope != OFFLINE_ACCESS]

# What an organization admin may choose for a service account's OAuth 2.0 credential here: the classic Jira
# scopes. offline_access is not one: client credentials never get a refresh token.
SERVICE_ACCOUNT_SCOPES = tuple(scope for scope in DESCRIPTIONS if scope != OFFLINE_ACCESS)
