"""Incoming application links: the OAuth 2.0 clients Jira knows about."""
