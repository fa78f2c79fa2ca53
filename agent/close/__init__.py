"""The end-of-day close (docs/close.md): computed from the journal, journaled as
``day.closed``, printed as a Z-report."""
