"""Projects and their issues, with the reporter Jira records: the user whose token created the issue."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models, transaction

# Jira's issue ids are one sequence over all projects, starting above 10000 on a new instance.
ISSUE_ID_OFFSET = 10000
# Jira's default project key pattern.
PROJECT_KEY_VALIDATOR = RegexValidator(
    r"^[A-Z][A-Z0-9]{1,9}$", "Use 2 to 10 upper-case letters or digits, first a letter."
)


class Project(models.Model):
    key = models.CharField(
        max_length=10,
        unique=True,
        validators=[PROJECT_KEY_VALIDATOR],
        help_text="Upper-case letters or digits, first a letter, e.g. DEMO.",
    )
    name = models.CharField(max_length=80)
    # The number of the project's last issue: Jira never reuses an issue key.
    issue_counter = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return f"{self.name} ({self.key})"


class NumberedIssue(models.Model):
    """What Data Center's issues and each Cloud site's issues share: a key numbered per project, Jira's id."""

    TYPES = ("Task", "Bug", "Story", "Epic")

    class Meta:
        abstract = True

    def __str__(self):
        return f"{self.key} {self.summary}"

    @classmethod
    def create(cls, *, project, reporter, issue_type, summary, description=""):
        """Number the issue in its project, as one write: concurrent creations never share a key."""
        with transaction.atomic():  # IMMEDIATE on SQLite: writers queue here
            type(project).objects.filter(pk=project.pk).update(issue_counter=models.F("issue_counter") + 1)
            project.refresh_from_db(fields=["issue_counter"])
            return cls.objects.create(
                project=project,
                number=project.issue_counter,
                reporter=reporter,
                issue_type=issue_type,
                summary=summary,
                description=description,
            )

    @property
    def key(self):
        return f"{self.project.key}-{self.number}"

    @property
    def jira_id(self):
        return str(ISSUE_ID_OFFSET + self.pk)


class Issue(NumberedIssue):

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="issues")
    number = models.PositiveIntegerField(editable=False)
    issue_type = models.CharField(max_length=20, choices=[(name, name) for name in NumberedIssue.TYPES],
                                  default="Task")
    summary = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reported_issues")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "number"], name="issue_number_unique_per_project")]

