"""The health timeline of a run's refreshes (services.history), written a hundred at a time in one round trip.

A refresh in the run's threads (or worker processes) leaves its entry on its result instead of writing it in its
own transaction: one statement less per refresh, where the run writes ENTRIES_PER_WRITE entries in one round trip
(history.write). Entries are written as they fill a write, and the rest when the run ends, however it ends (a
stop, a failure). A killed run loses the entries not yet written (at most a write's worth: the grants' tokens,
counts and errors are on their rows, only their days' tallies miss them); a database that refuses them costs the
entries, logged, never a refresh.
"""

from __future__ import annotations

from alm_accounts.services import history


class Timeline:
    """Collects the entries of a run's results; writes them a write's worth at a time, and at close()."""

    def __init__(self, *, write=history.write_or_log, per_write: int = history.ENTRIES_PER_WRITE):
        self.write, self.per_write = write, per_write
        self.pending: list[history.Entry] = []

    def add(self, result) -> None:
        """Keep the result's entry (if any); write the pending ones once they fill a write."""
        if result.timeline is not None:
            self.pending.append(result.timeline)
            if len(self.pending) >= self.per_write:
                self.close()

    def close(self) -> None:
        """Write what is pending now."""
        pending, self.pending = self.pending, []
        if pending:
            self.write(pending)
