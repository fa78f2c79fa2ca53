"""The fleet dashboard (issue 15): server-rendered pages under ``/dashboard/`` of
``posedge backoffice serve``, behind staff logins (docs/dashboard.md).

Nothing is imported here: backoffice/schema.py imports :mod:`.tables`, and the app
imports :mod:`.routes` (Jinja2) only where it mounts the dashboard.
"""
