"""The health timeline of a run's refreshes (services.history), written a hundred grants to a statement.

A refresh in the run's threads (or worker processes) leaves its entry on its result instead of writing it in its
own transaction: one statement less per refresh, where the run writes ROWS_PER_STATEMENT entries in one. Entries
are written as they fill a statement, and the rest when the run ends, however it ends (a stop, a failure). A
killed run loses the entries not yet written (at most a statement's worth: the grants' tokens, counts and errors
are on their rows, only their days' tallies miss them); a database that refuses them costs the entries, logged,
never a refresh.
"""

from __future__ import annotations

from alm_accounts.services import history


class Timeline:
    """Collects the entries of a run's results; writes them a statement's worth at a time, and at close()."""

    def __init__(self, *, write=history.write_or_log, rows_per_statement: int = history.ROWS_PER_STATEMENT):
        self.write, self.rows_per_statement = write, rows_per_statement
        self.pending: list[history.Entry] = []

    def add(self, result) -> None:
        """Keep the result's entry (if any); write the pending ones once they fill a statement."""
        if result.timeline is not None:
            self.pending.append(result.timeline)
            if len(self.pending) >= self.rows_per_statement:
                self.close()

    def close(self) -> None:
        """Write what is pending now."""
        pending, self.pending = self.pending, []
        if pending:
            self.write(pending)
