"""Security review (issue 18), items 6 and 7: hostile or odd input gets a clear refusal, never a token sent where
it does not belong, a traceback or a 500."""

from __future__ import annotations

import pytest

from alm_accounts import services

# --------------------------------------------------------------------------
# Item 6: Tomcat path parameters. Jira Data Center runs on Tomcat, which drops a segment's ";parameters" before
# resolving dot segments: "/rest/..;/..;/x" is "/x", outside Jira's context path, on the same host.
# --------------------------------------------------------------------------

TOMCAT_DOT_SEGMENTS = ["/rest/..;/..;/x", "/rest/%2E%2e;/x", "/rest/api/2/..;jsessionid=1/..;/x", "/.;/x",
                       "/rest/%2e%2e%3b/x"]


@pytest.mark.parametrize("path", TOMCAT_DOT_SEGMENTS)
def test_a_dot_segment_with_path_parameters_is_refused_on_data_center(connected_account, mocked_jira, path):
    with pytest.raises(services.InvalidJiraPath, match="nothing was sent"):
        services.jira_request(account=connected_account, method="GET", path=path)
    assert len(mocked_jira.calls) == 0  # the Bearer token went nowhere


@pytest.mark.parametrize("path", TOMCAT_DOT_SEGMENTS)
def test_a_dot_segment_with_path_parameters_is_refused_on_jira_cloud(connected_cloud_account, mocked_jira, path):
    with pytest.raises(services.InvalidJiraPath, match="nothing was sent"):
        services.jira_request(account=connected_cloud_account, method="GET", path=path)
    assert len(mocked_jira.calls) == 0
