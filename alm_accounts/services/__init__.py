"""The use cases of an ALM account's Jira connection, one function each.

Transactions, row locks, status changes and audit events happen here and
nowhere else. Admin screens, the OAuth callback and operator commands call
these functions and turn their results into messages.

Messages returned or raised here are shown to admins and stored in the audit
trail: they never contain a token, a secret, a code or a PKCE verifier. The
functions that hold such values are marked @sensitive_variables, so Django's
error reports (DEBUG pages, error e-mails) never show their local variables.

- common: errors, the audit trail, the Jira client of an account, our own transactions
- authorization: Get Auth Token (start, callback)
- grants: refresh under the row lock, on-demand tokens
- connection: Test connection, Disconnect (either kind of grant), what ends a connection
- jira_calls: REST calls as a person or as the account (jira_request, iter_jira_pages)
- alerts, alert_delivery: a connection broke or recovered (decided under the row lock), and telling someone
"""

from .alert_delivery import ChannelReport, DeliveryCounts, deliver_alert, deliver_pending
from .alerts import send_test_alert
from .authorization import (
    SESSION_BINDING_KEY,
    CallbackForbidden,
    CallbackOutcome,
    CallbackRejected,
    complete_authorization,
    complete_cloud_authorization,
    start_authorization,
    started_for_own_credential,
)
from .common import NestedTransactionError, ServiceError, actor_of, client_for, record_event
from .connection import (
    Outcome,
    delete_account,
    disconnect,
    disconnect_grant,
    end_credentials_of_person,
    save_account,
    test_connection,
    test_grant,
)
from .grants import (
    ACCESS_TOKEN_MIN_VALIDITY,
    GrantRef,
    RefreshOutcome,
    RefreshResult,
    grant_name,
    refresh_account,
    refresh_grant,
    valid_access_token,
)
from .jira_calls import (
    NOT_THEIR_OWN_JIRA_USER,
    InvalidJiraPath,
    JiraIdentity,
    JiraRequestError,
    NoJiraIdentity,
    describe_grant,
    grant_request,
    iter_jira_pages,
    jira_identity,
    jira_request,
)
from .service_accounts import by_client_credentials, no_token_yet, service_connected

__all__ = [
    "ACCESS_TOKEN_MIN_VALIDITY", "SESSION_BINDING_KEY", "CallbackForbidden", "CallbackOutcome", "CallbackRejected",
    "GrantRef", "NestedTransactionError", "Outcome", "RefreshOutcome", "RefreshResult", "ServiceError", "actor_of",
    "client_for", "complete_authorization",
    "complete_cloud_authorization", "delete_account", "disconnect", "grant_name",
    "record_event", "refresh_account", "refresh_grant", "save_account", "start_authorization",
    "started_for_own_credential", "test_connection", "valid_access_token",
    # Test and Disconnect for either kind of grant; a person's credentials ended (connection)
    "disconnect_grant", "end_credentials_of_person", "test_grant",
    # Calling Jira as a person (jira_calls)
    "InvalidJiraPath", "JiraIdentity", "JiraRequestError", "NoJiraIdentity", "describe_grant", "grant_request",
    "iter_jira_pages", "jira_identity", "jira_request", "NOT_THEIR_OWN_JIRA_USER",
    # Service accounts (service_accounts): what the screens say
    "by_client_credentials", "no_token_yet", "service_connected",
    # Alerts: delivering the outbox (alert_delivery)
    "ChannelReport", "DeliveryCounts", "deliver_alert", "deliver_pending", "send_test_alert",
]
