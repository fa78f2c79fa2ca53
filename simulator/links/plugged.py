"""What the pty and TCP links share: they follow their device's plug state.

Plugged, a link serves the device (``_plug_in``); unplugged, it tears its
endpoint down so the host sees the device vanish (``_pull_out``). Closing stops
following the device for good.
"""

from __future__ import annotations

import threading
from typing import Self

from ..core import VirtualDevice


class PluggedLink:
    """Base of a link whose endpoint exists exactly while its device is plugged in."""

    def __init__(self, device: VirtualDevice) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._closed = False

    def _follow_plug(self) -> None:
        """Serve now if plugged, then on every plug change (call at the end of ``__init__``)."""
        if self.device.plugged:
            self._plug_in()
        self.device.add_plug_listener(self._on_plug)

    def _on_plug(self, plugged: bool) -> None:
        if plugged:
            self._plug_in()
        else:
            self._pull_out()

    def _plug_in(self) -> None:
        raise NotImplementedError

    def _pull_out(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.device.remove_plug_listener(self._on_plug)
        self._pull_out()
        with self._lock:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
