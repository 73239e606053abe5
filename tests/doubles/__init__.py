"""Test doubles: the stand-ins the tests talk to instead of the real world.

- `fake_jira`: Jira Data Center (and Atlassian Cloud's token endpoint) on a real local socket.
- `servers`: a free port, a real process started for a test and stopped after, a mail server that keeps mail.
- `webhook_receiver`: an alert webhook endpoint on a real local socket that records and checks what it gets.

Fixtures that start them live in tests/conftest.py (`fake_jira`, `webhook`...); nothing here is a test.
"""
