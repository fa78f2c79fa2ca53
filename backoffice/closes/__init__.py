"""End-of-day closes at the back office: reconciliation, resend of missing seqs, settlement.

See docs/reconciliation.md. Nothing is imported here: backoffice/store.py imports
:mod:`.holes`, and the other modules import the store.
"""
