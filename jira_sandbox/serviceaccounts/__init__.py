"""Jira Data Center's service accounts: non-human users that get tokens with the client credentials grant."""
