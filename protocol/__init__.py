"""The sync and authorization protocol (docs/sync-protocol.md) as code: one definition, two sides.

The agent imports it to build and parse requests, the reference back office to
validate them and to generate ``docs/openapi-sync.json``, so the two cannot
drift. :mod:`.models` holds the request and response bodies (pydantic),
:mod:`.idempotency` the attempt, reversal and idempotency-key rules.

This package is pure: it must never do I/O (no files, sockets, logging or
clocks), never keep card data, and never import from ``posedge.agent`` or
``posedge.simulator``.
"""
