"""A development-only stand-in for Jira Data Center's OAuth 2.0 provider.

It is a separate Django project (its own settings, database and cookies) so the
integration can be exercised end to end without a Jira licence. Never import it
from the main project: it is a server to talk to over HTTP, like Jira itself.
"""
