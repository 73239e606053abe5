"""One way to write a moment on every screen: 2026-12-06 10:43:52 UTC, with the time zone.

Django's English default ("Dec. 6, 2026, 8:43 a.m.", no zone) stood beside the admin's own
"2026-12-06 10:43:52 UTC" on the same page. alm_accounts.admin.when() writes the same format.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
