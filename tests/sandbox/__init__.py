"""Tests of the development-only Jira sandbox, run as a real server."""
