"""Jira Cloud's issue resources (REST API v3) on one site: create, read one, search in pages.

As on the Data Center side, only what a client of user-based sync can tell
apart: the reporter is the token's person (by accountId), and the description
is an Atlassian Document (ADF) or absent, never a plain string (that is v2).
"""

import json
import re

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from jira_sandbox.issues.models import ISSUE_ID_OFFSET, Issue
from jira_sandbox.issues.rest import SEARCH_DEFAULT_MAX_RESULTS, SUMMARY_MAX_LENGTH
from jira_sandbox.rest_api import error_response

from . import identity, scopes
from .gateway import authorized
from .models import CloudIssue, CloudProject

CREATE_FIELDS = ("project", "issuetype", "summary", "description")
CLOUD_SEARCH_MAX_RESULTS = 100  # Jira Cloud's ceiling for one page
NOT_ADF = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"


def _jira_time(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def issue_json(site, issue):
    project = issue.project
    reporter = identity.user_json(site, issue.reporter)
    return {
        "id": issue.jira_id,
        "self": f"{site.url}/rest/api/3/issue/{issue.jira_id}",
        "key": issue.key,
        "fields": {
            "summary": issue.summary,
            "description": issue.description,
            "issuetype": {"name": issue.issue_type, "subtask": False},
            "project": {
                "self": f"{site.url}/rest/api/3/project/{project.jira_id}",
                "id": project.jira_id,
                "key": project.key,
                "name": project.name,
            },
            "reporter": reporter,
            "creator": reporter,
            "created": _jira_time(issue.created),
        },
    }


def _find_project(site, reference):
    if not isinstance(reference, dict):
        return None
    projects = CloudProject.objects.filter(site=site)
    if reference.get("key"):
        return projects.filter(key=str(reference["key"]).upper()).first()
    project_id = str(reference.get("id", ""))
    if project_id.isdigit() and int(project_id) > ISSUE_ID_OFFSET:
        return projects.filter(pk=int(project_id) - ISSUE_ID_OFFSET).first()
    return None


def _is_adf(value):
    return isinstance(value, dict) and value.get("type") == "doc" and isinstance(value.get("content"), list)


def _validate_create(site, fields):
    errors = {
        name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
        for name in fields
        if name not in CREATE_FIELDS
    }
    if not fields.get("project"):
        errors["project"] = "Specify a valid project ID or key"
    elif not _find_project(site, fields["project"]):
        errors["project"] = "valid project is required"
    issue_type = fields.get("issuetype")
    if not isinstance(issue_type, dict) or issue_type.get("name") not in Issue.TYPES:
        errors["issuetype"] = "Specify an issue type"
    summary = fields.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors["summary"] = "You must specify a summary of the issue."
    elif len(summary) > SUMMARY_MAX_LENGTH or "\n" in summary or "\r" in summary:
        errors["summary"] = "Summary must be less than 255 characters and on one line."
    description = fields.get("description")
    if description is not None and not _is_adf(description):
        errors["description"] = NOT_ADF
    return errors


@csrf_exempt  # Bearer only: no cookie session to forge requests with
@require_POST
@authorized(scope=scopes.WRITE_WORK)
def create_issue(request, site):
    """POST .../rest/api/3/issue: 201 {"id", "key", "self"}, the token's person as reporter."""
    try:
        body = json.loads(request.body or b"{}")
    except (UnicodeDecodeError, ValueError):
        return error_response(400, messages=["The request body is not valid JSON."])
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        return error_response(400, messages=['The issue\'s fields must be a JSON object under "fields".'])
    errors = _validate_create(site, fields)
    if errors:
        return error_response(400, errors=errors)
    issue = CloudIssue.create(
        project=_find_project(site, fields["project"]),
        reporter=request.cloud_user,
        issue_type=fields["issuetype"]["name"],
        summary=fields["summary"].strip(),
        description=fields.get("description"),
    )
    return JsonResponse(
        {"id": issue.jira_id, "key": issue.key, "self": f"{site.url}/rest/api/3/issue/{issue.jira_id}"}, status=201
    )


def _site_issues(site):
    return CloudIssue.objects.filter(project__site=site).select_related("project", "reporter").order_by("id")


@require_GET
@authorized(scope=scopes.READ_WORK)
def get_issue(request, site, id_or_key):
    issues = _site_issues(site)
    if id_or_key.isdigit():
        issue = issues.filter(pk=int(id_or_key) - ISSUE_ID_OFFSET).first()
    else:
        project_key, _, number = id_or_key.upper().rpartition("-")
        issue = issues.filter(project__key=project_key, number=number).first() if number.isdigit() else None
    if issue is None:
        return error_response(404, messages=["Issue does not exist or you do not have permission to see it."])
    return JsonResponse(issue_json(site, issue))


_PROJECT_CLAUSE = re.compile(r"\bproject\s*=\s*\"?([A-Za-z][A-Za-z0-9_]*)\"?", re.IGNORECASE)


@require_GET
@authorized(scope=scopes.READ_WORK)
def search(request, site):
    """GET .../rest/api/3/search?jql=&startAt=&maxResults=: the site's issues in pages, as on Data Center.

    Only a `project = KEY` clause of the JQL is understood. A page holds at most
    100 issues (Cloud's ceiling), or SANDBOX_SEARCH_MAX_RESULTS when lower.
    """
    try:
        start_at = max(int(request.GET.get("startAt") or 0), 0)
        max_results = int(request.GET.get("maxResults") or SEARCH_DEFAULT_MAX_RESULTS)
    except ValueError:
        return error_response(400, messages=["startAt and maxResults must be whole numbers."])
    if max_results < 0:
        max_results = SEARCH_DEFAULT_MAX_RESULTS
    max_results = min(max_results, CLOUD_SEARCH_MAX_RESULTS, settings.SANDBOX_SEARCH_MAX_RESULTS)
    issues = _site_issues(site)
    clause = _PROJECT_CLAUSE.search(request.GET.get("jql", ""))
    if clause:
        named, key = clause.group(1), clause.group(1).upper()
        if not CloudProject.objects.filter(site=site, key=key).exists():
            return error_response(400, messages=[f"The value '{named}' does not exist for the field 'project'."])
        issues = issues.filter(project__key=key)
    total = issues.count()
    page = issues[start_at : start_at + max_results] if max_results else []
    return JsonResponse(
        {
            "expand": "schema,names",
            "startAt": start_at,
            "maxResults": max_results,
            "total": total,
            "issues": [issue_json(site, issue) for issue in page],
        }
    )
