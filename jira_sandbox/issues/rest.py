"""Jira's issue resources: create (recording the token's user as reporter), read one, search in pages.

Only what a client of user-based sync can tell apart: the create screen has
the fields project, issuetype (by name), summary and description, and the
reporter is always the user who authorized the token, as in Jira when the
Modify Reporter permission is not granted.
"""

import json
import re

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from jira_sandbox import users
from jira_sandbox.rest_api import base_url, bearer_required, error_response

from .models import ISSUE_ID_OFFSET, Issue, Project

CREATE_FIELDS = ("project", "issuetype", "summary", "description")
SUMMARY_MAX_LENGTH = 255
SEARCH_DEFAULT_MAX_RESULTS = 50  # Jira's default page size for /search


def _jira_time(moment):
    """Jira's timestamp format, e.g. 2024-05-01T09:30:00.000+0000."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def issue_json(request, issue):
    base = base_url(request)
    project = issue.project
    reporter = users.user_json(request, issue.reporter)
    return {
        "id": issue.jira_id,
        "self": f"{base}/rest/api/2/issue/{issue.jira_id}",
        "key": issue.key,
        "fields": {
            "summary": issue.summary,
            "description": issue.description or None,  # Jira says null, not "", for no description
            "issuetype": {"name": issue.issue_type, "subtask": False},
            "project": {
                "self": f"{base}/rest/api/2/project/{project.key}",
                "id": str(ISSUE_ID_OFFSET + project.pk),
                "key": project.key,
                "name": project.name,
            },
            "reporter": reporter,
            "creator": reporter,
            "created": _jira_time(issue.created),
        },
    }


def _validate_create(fields):
    """Jira's field errors for a create request: {field: message}, empty when the issue can be created."""
    errors = {}
    for name in fields:
        if name not in CREATE_FIELDS:
            errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."

    project_ref = fields.get("project")
    if not project_ref:
        errors["project"] = "project is required"
    elif not isinstance(project_ref, dict) or not _find_project(project_ref):
        errors["project"] = "valid project is required"

    issue_type = fields.get("issuetype")
    if not issue_type:
        errors["issuetype"] = "issue type is required"
    elif not isinstance(issue_type, dict) or issue_type.get("name") not in Issue.TYPES:
        errors["issuetype"] = "valid issue type is required"

    summary = fields.get("summary")
    if summary is not None and not isinstance(summary, str):
        errors["summary"] = "Operation value must be a string"
    elif not summary or not summary.strip():
        errors["summary"] = "You must specify a summary of the issue."
    elif len(summary) > SUMMARY_MAX_LENGTH:
        errors["summary"] = "Summary must be less than 255 characters."
    elif "\n" in summary or "\r" in summary:
        errors["summary"] = "The summary is invalid because it contains newline characters."

    description = fields.get("description")
    if description is not None and not isinstance(description, str):
        errors["description"] = "Operation value must be a string"
    return errors


def _find_project(reference):
    """A project by {"key": ...} or {"id": ...}, as Jira accepts both; None when there is none."""
    if reference.get("key"):
        return Project.objects.filter(key=str(reference["key"]).upper()).first()
    project_id = str(reference.get("id", ""))
    if project_id.isdigit() and int(project_id) > ISSUE_ID_OFFSET:
        return Project.objects.filter(pk=int(project_id) - ISSUE_ID_OFFSET).first()
    return None


@csrf_exempt  # Bearer only, no cookies: there is no session to forge requests with
@require_POST
@bearer_required(scope="WRITE")
def create_issue(request):
    """POST /rest/api/2/issue: 201 {"id", "key", "self"}, the token's user as reporter; Jira's 400 otherwise."""
    if request.content_type != "application/json":
        return error_response(415, messages=["Send the issue as JSON (Content-Type: application/json)."])
    try:
        body = json.loads(request.body or b"{}")
    except (UnicodeDecodeError, ValueError):
        return error_response(400, messages=["The request body is not valid JSON."])
    fields = body.get("fields", {}) if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        return error_response(400, messages=['The issue\'s fields must be a JSON object under "fields".'])

    errors = _validate_create(fields)
    if errors:
        return error_response(400, errors=errors)
    issue = Issue.create(
        project=_find_project(fields["project"]),
        reporter=request.oauth_user,
        issue_type=fields["issuetype"]["name"],
        summary=fields["summary"].strip(),
        description=fields.get("description") or "",
    )
    return JsonResponse(
        {"id": issue.jira_id, "key": issue.key, "self": f"{base_url(request)}/rest/api/2/issue/{issue.jira_id}"},
        status=201,
    )


@require_GET
@bearer_required
def get_issue(request, id_or_key):
    """GET /rest/api/2/issue/{id or key}: the issue, or Jira's 404."""
    issue = find_issue(Issue.objects.select_related("project", "reporter"), id_or_key)
    if issue is None:
        return error_response(404, messages=["Issue Does Not Exist"])
    return JsonResponse(issue_json(request, issue))


_PROJECT_CLAUSE = re.compile(r"\bproject\s*=\s*\"?([A-Za-z][A-Za-z0-9_]*)\"?", re.IGNORECASE)


def _int_param(request, name, default):
    value = request.GET.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        return None


@require_GET
@bearer_required
def search(request):
    """GET /rest/api/2/search?jql=&startAt=&maxResults=: Jira's paged shape over the stored issues.

    Of the JQL only a `project = KEY` clause is understood (an unknown key gets
    Jira's 400); every other clause, and ORDER BY, is ignored. Issues come in
    creation order, so pages are stable while nothing is created. A page holds
    at most SANDBOX_SEARCH_MAX_RESULTS issues whatever the client asks for, and
    the answer's maxResults says what was applied, as Jira's does.
    """
    return search_page(request, Issue.objects.select_related("project", "reporter").order_by("id"),
                       projects=Project.objects.all(), ceiling=settings.SANDBOX_SEARCH_MAX_RESULTS,
                       to_json=lambda issue: issue_json(request, issue))


def find_issue(issues, id_or_key: str):
    """The issue Jira's id ("10001") or key ("DEMO-1") names among `issues`, or None."""
    if id_or_key.isdigit():
        return issues.filter(pk=int(id_or_key) - ISSUE_ID_OFFSET).first()
    project_key, _, number = id_or_key.upper().rpartition("-")
    return issues.filter(project__key=project_key, number=number).first() if number.isdigit() else None


def search_page(request, issues, *, projects, ceiling: int, to_json):
    """Jira's paged search answer over `issues` (Data Center's and each Cloud site's alike).

    Of the JQL only a `project = KEY` clause is understood (a key not among `projects` gets Jira's 400); every
    other clause, and ORDER BY, is ignored. A page holds at most `ceiling` issues whatever the client asks for, and
    the answer's maxResults says what was applied, as Jira's does.
    """
    start_at = _int_param(request, "startAt", 0)
    max_results = _int_param(request, "maxResults", SEARCH_DEFAULT_MAX_RESULTS)
    if start_at is None or max_results is None:
        return error_response(400, messages=["startAt and maxResults must be whole numbers."])
    start_at = max(start_at, 0)
    if max_results < 0:
        max_results = SEARCH_DEFAULT_MAX_RESULTS
    max_results = min(max_results, ceiling)
    clause = _PROJECT_CLAUSE.search(request.GET.get("jql", ""))
    if clause:
        key = clause.group(1)
        if not projects.filter(key=key.upper()).exists():
            return error_response(400, messages=[f"The value '{key}' does not exist for the field 'project'."])
        issues = issues.filter(project__key=key.upper())
    total = issues.count()
    page = issues[start_at : start_at + max_results] if max_results else []
    return JsonResponse(
        {
            "expand": "schema,names",
            "startAt": start_at,
            "maxResults": max_results,
            "total": total,
            "issues": [to_json(issue) for issue in page],
        }
    )
