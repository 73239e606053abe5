"""Jira's OAuth 2.0 scopes: one ladder, where each rung includes those below.

An incoming link's Permission is the ceiling of what may be requested through
it. This module is the single place that knows the order of the rungs.
"""

from oauth2_provider.scopes import SettingsScopes

LEVELS = ("READ", "WRITE", "ADMIN", "SYSTEM_ADMIN")
# What Jira lets a service account ask for: endpoints needing ADMIN or above are not open to client credentials.
SERVICE_ACCOUNT_LEVELS = ("READ", "WRITE")


def includes(granted, required):
    """Whether a token or link holding `granted` may do what `required` allows."""
    if granted not in LEVELS or required not in LEVELS:
        return False
    return LEVELS.index(granted) >= LEVELS.index(required)


def highest(scope):
    """The highest rung among a token's space-separated scopes (a service account may ask for "READ WRITE")."""
    held = [level for level in scope.split() if level in LEVELS]
    return max(held, key=LEVELS.index) if held else ""


def up_to(permission):
    """The scopes a link with this Permission may hand out."""
    return [level for level in LEVELS if includes(permission, level)]


class LinkPermissionScopes(SettingsScopes):
    """DOT scopes backend: an application may be granted scopes up to its Permission."""

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):
        if application is None:
            return []
        return up_to(application.permission)

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):
        return []
