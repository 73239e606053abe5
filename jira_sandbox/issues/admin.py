"""Issues in the sandbox admin, so a person can see which Jira user reported what."""

from django.contrib import admin

from jira_sandbox import users

from .models import Issue, Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "issue_counter")


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = ("key", "summary", "issue_type", "reporter_name", "created")
    list_filter = ("project",)
    list_select_related = ("project", "reporter")
    search_fields = ("summary",)
    fields = ("project", "issue_type", "summary", "description", "reporter", "created")
    readonly_fields = ("project", "reporter", "created")

    @admin.display(description="Reporter")
    def reporter_name(self, issue):
        return f"{users.display_name(issue.reporter)} ({issue.reporter.username})"

    def has_add_permission(self, request):
        # The reporter is whoever's token created the issue: only POST /rest/api/2/issue creates.
        return False
