"""Diagnostics for the field: device dumps and support bundles.

Device dumps (docs/diagnostics.md): :mod:`.dump` defines and collects the versioned
dump document, :mod:`.files` writes it under ``<state dir>/dumps``, :mod:`.service`
serves it from the running daemon (SIGUSR1 and ``GET /v1/devices/dump``),
:mod:`.dump_cli` is ``posedge devices dump``. The support bundle lives beside them
(:mod:`.bundle` and the modules it names).
"""
