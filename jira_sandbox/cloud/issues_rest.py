"""Jira Cloud's issue resources (REST API v3) on one site: create, read one, search in pages.

As on the Data Center side, only what a client of user-based sync can tell
apart: the reporter is the token's person (by accountId), and the description
is an Atlassian Document (ADF) or absent, never a plain string, in REST v3. Jira Cloud
also serves REST v2, where the description is plain text: stored as a one-paragraph
document, read back as its text.
"""

import json

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from jira_sandbox.issues.models import ISSUE_ID_OFFSET, NumberedIssue
from jira_sandbox.issues.rest import SUMMARY_MAX_LENGTH, find_issue, search_page
from jira_sandbox.rest_api import error_response

from . import identity, scopes
from .gateway import authorized
from .models import CloudIssue, CloudProject

CREATE_FIELDS = ("project", "issuetype", "summary", "description")
CLOUD_SEARCH_MAX_RESULTS = 100  # Jira Cloud's ceiling for one page
NOT_ADF = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"


def _jira_time(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def text_document(text):
    """A plain-text (v2) description as the document Jira Cloud stores."""
    return {"type": "doc", "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}]}


def document_text(document):
    """A stored document as v2 shows it: its text, paragraphs on their own lines."""
    if not _is_adf(document):
        return None
    return "\n".join("".join(part.get("text", "") for part in block.get("content", []) if isinstance(part, dict))
                     for block in document["content"] if isinstance(block, dict))


def issue_json(site, issue, version=3):
    project = issue.project
    reporter = identity.user_json(site, issue.reporter)
    return {
        "id": issue.jira_id,
        "self": f"{site.url}/rest/api/{version}/issue/{issue.jira_id}",
        "key": issue.key,
        "fields": {
            "summary": issue.summary,
            "description": issue.description if version == 3 else document_text(issue.description),
            "issuetype": {"name": issue.issue_type, "subtask": False},
            "project": {
                "self": f"{site.url}/rest/api/{version}/project/{project.jira_id}",
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


def _validate_create(site, fields, version):
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
    if not isinstance(issue_type, dict) or issue_type.get("name") not in NumberedIssue.TYPES:
        errors["issuetype"] = "Specify an issue type"
    summary = fields.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors["summary"] = "You must specify a summary of the issue."
    elif len(summary) > SUMMARY_MAX_LENGTH or "\n" in summary or "\r" in summary:
        errors["summary"] = "Summary must be less than 255 characters and on one line."
    description = fields.get("description")
    if version == 2:
        if description is not None and not isinstance(description, str):
            errors["description"] = "Operation value must be a string"
    elif description is not None and not _is_adf(description):
        errors["description"] = NOT_ADF
    return errors


@csrf_exempt  # Bearer only: no cookie session to forge requests with
@require_POST
@authorized(scope=scopes.WRITE_WORK)
def create_issue(request, site, version=3):
    """POST .../rest/api/{2,3}/issue: 201 {"id", "key", "self"}, the token's person as reporter."""
    try:
        body = json.loads(request.body or b"{}")
    except (UnicodeDecodeError, ValueError):
        return error_response(400, messages=["The request body is not valid JSON."])
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        return error_response(400, messages=['The issue\'s fields must be a JSON object under "fields".'])
    errors = _validate_create(site, fields, version)
    if errors:
        return error_response(400, errors=errors)
    issue = CloudIssue.create(
        project=_find_project(site, fields["project"]),
        reporter=request.cloud_user,
        issue_type=fields["issuetype"]["name"],
        summary=fields["summary"].strip(),
        description=text_document(fields["description"]) if version == 2 and fields.get("description")
        else fields.get("description"),
    )
    return JsonResponse(
        {"id": issue.jira_id, "key": issue.key, "self": f"{site.url}/rest/api/{version}/issue/{issue.jira_id}"},
        status=201,
    )


def _site_issues(site):
    return CloudIssue.objects.filter(project__site=site).select_related("project", "reporter").order_by("id")


@require_GET
@authorized(scope=scopes.READ_WORK)
def get_issue(request, site, id_or_key, version=3):
    issue = find_issue(_site_issues(site), id_or_key)
    if issue is None:
        return error_response(404, messages=["Issue does not exist or you do not have permission to see it."])
    return JsonResponse(issue_json(site, issue, version))




@require_GET
@authorized(scope=scopes.READ_WORK)
def search(request, site, version=3):
    """GET .../rest/api/{2,3}/search?jql=&startAt=&maxResults=: the site's issues in pages, as on Data Center.

    Only a `project = KEY` clause of the JQL is understood. A page holds at most
    100 issues (Cloud's ceiling), or SANDBOX_SEARCH_MAX_RESULTS when lower.
    """
    return search_page(request, _site_issues(site), projects=CloudProject.objects.filter(site=site),
                       ceiling=min(CLOUD_SEARCH_MAX_RESULTS, settings.SANDBOX_SEARCH_MAX_RESULTS),
                       to_json=lambda issue: issue_json(site, issue, version))
