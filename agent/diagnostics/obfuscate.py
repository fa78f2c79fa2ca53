"""Consistent obfuscation of host names, addresses and e-mail addresses in a support bundle.

One :class:`Obfuscator` serves a whole bundle, so the same input gets the same
placeholder in every file: ``host-1`` for a host name (the terminal's own, one in a
URL, a dotted name under a common top-level domain, or one learned from a URL
anywhere in the bundle), ``ip-1`` for an IPv4 or IPv6 address, ``email-1`` for an
e-mail address. Loopback (``127.0.0.0/8``, ``::1``, ``localhost``) and unspecified
addresses (``0.0.0.0``, ``::``) are kept: they identify nothing. Inputs are compared
as written (``Example.com`` and ``example.com`` are two entries), so a placeholder
always maps back to the exact text it replaced.

:meth:`Obfuscator.mapping` (placeholder → original) is written next to the bundle,
never into it; :func:`deobfuscate` puts the originals back into a text (the
vendor's answer) with it. Device URLs of the simulator and of USB devices
(``sim://``, ``loop://``, ``usb://``, ``file://``) name no host and are kept.

This module never sees secrets or card data on purpose: the bundle scrubs those
first (:mod:`.leaks`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

PLACEHOLDER = re.compile(r"(?<![\w-])(?:host|ip|email)-[1-9]\d*(?![\w-])")
KEPT_SCHEMES = frozenset({"sim", "loop", "usb", "file", "unix", "http+unix"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Top-level domains that make a dotted word a host name in free text. Dotted words
# under other endings (module names, file names, event types, check names:
# posedge.agent.cli, journal.db, sale.created, printer.online) are left alone, and so
# are endings that are also English words used in such names (info, online, app, at,
# it, in, no, me, be, site, store, shop, dev, cloud, home). A host under one of those
# is still replaced where it appears in a URL, and everywhere once a URL named it.
COMMON_TLDS = (
    "com", "net", "org", "edu", "gov", "mil", "biz", "io", "co", "local", "lan",
    "localdomain", "internal", "intranet", "corp", "example", "test", "invalid", "arpa", "de",
    "uk", "fr", "nl", "ch", "es", "us", "ca", "au", "dk", "se", "fi", "ie", "pt", "cz", "pl",
    "jp", "cn", "br", "eu", "ru", "lu", "gr", "hu", "ro", "sk", "si", "hr", "bg", "ee", "lv",
    "lt", "nz", "za", "mx", "ar", "tr", "il", "ae", "sg", "hk", "kr", "tw",
)  # fmt: skip

_URL = r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*)://(?P<userinfo>[^/@\s\"'<>]*@)?"
_URL_HOST = r"(?P<urlhost>\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]|[^/:\s\"'<>?#\[\]@,;)}]+)"
_EMAIL = r"(?P<email>(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
_IPV4 = r"(?P<ipv4>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d))"
_IPV6 = r"(?P<ipv6>(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[\w.-]+)?(?![\w:]))"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOTTED = (
    rf"(?P<dotted>(?<![\w.@-])(?:{_LABEL}\.)+(?i:{'|'.join(COMMON_TLDS)})"
    r"(?![\w-]|\.[A-Za-z0-9]))"
)


class Obfuscator:
    """Replaces host names, addresses and e-mail addresses by stable placeholders."""

    def __init__(self, own_hostnames: Iterable[str] = ()) -> None:
        self._forward: dict[tuple[str, str], str] = {}
        self._reverse: dict[str, str] = {}
        self._counts = {"host": 0, "ip": 0, "email": 0}
        self._known: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for name in own_hostnames:
            self.learn_host(name)

    # ---- learning -----------------------------------------------------------------
    def learn_host(self, name: str) -> None:
        """A host name to replace wherever it stands as a word (the terminal's own,
        one seen in a URL): needed for names without a dot or a common ending."""
        name = name.strip().rstrip(".")
        if not name or _is_kept_host(name) or PLACEHOLDER.fullmatch(name):
            return
        if _is_ip(name) or not any(c.isalpha() for c in name):
            return  # an address is matched as one; a bare number is no host name
        if name not in self._known:
            self._known.add(name)
            self._pattern = None

    def learn(self, value: Any) -> None:
        """Learn the hosts of every URL in a JSON-like value (before :meth:`value`, so a
        host is replaced even where it appears before its URL)."""
        for text in _strings(value):
            for match in re.finditer(_URL + _URL_HOST, text):
                if match.group("scheme").lower() not in KEPT_SCHEMES:
                    host = match.group("urlhost")
                    if not host.startswith("[") and not _is_ip(host):
                        self.learn_host(host)

    # ---- replacing ----------------------------------------------------------------
    def text(self, text: str) -> str:
        return self._compiled().sub(self._replace, text)

    def value(self, value: Any) -> Any:
        """:meth:`text` over every string of a JSON-like value, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def mapping(self) -> dict[str, str]:
        """Placeholder → the original text, in order of first use."""
        return dict(self._reverse)

    def _compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            parts = [_URL + _URL_HOST, _EMAIL, _IPV6, _IPV4, _DOTTED]
            if self._known:
                names = "|".join(re.escape(n) for n in sorted(self._known, key=lambda n: -len(n)))
                parts.append(rf"(?P<known>(?<![\w.-])(?:{names})(?![\w-]|\.[A-Za-z0-9]))")
            self._pattern = re.compile("|".join(parts))
        return self._pattern

    def _replace(self, match: re.Match[str]) -> str:
        kind = match.lastgroup
        whole = match.group()
        if kind == "urlhost":
            scheme = match.group("scheme")
            if scheme.lower() in KEPT_SCHEMES:
                return whole
            host = match.group("urlhost")
            prefix = whole[: len(whole) - len(host)]
            return prefix + self._host_or_ip(host)
        if kind == "email":
            return self._placeholder("email", whole)
        if kind in ("ipv4", "ipv6"):
            return self._address(whole)
        if kind in ("dotted", "known"):
            return whole if _is_kept_host(whole) else self._placeholder("host", whole)
        return whole  # pragma: no cover - every group is handled above

    def _host_or_ip(self, host: str) -> str:
        if host.startswith("[") and host.endswith("]"):
            inner = host[1:-1]
            return f"[{self._address(inner)}]" if _is_ip(inner) else host
        if _is_ip(host):
            return self._address(host)
        return host if _is_kept_host(host) else self._placeholder("host", host)

    def _address(self, text: str) -> str:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return text  # a time, a MAC, a version: not an address
        if address.is_loopback or address.is_unspecified:
            return text
        return self._placeholder("ip", text)

    def _placeholder(self, kind: str, original: str) -> str:
        if PLACEHOLDER.fullmatch(original):
            return original  # already one (a second pass)
        key = (kind, original)
        found = self._forward.get(key)
        if found is None:
            self._counts[kind] += 1
            found = f"{kind}-{self._counts[kind]}"
            self._forward[key] = found
            self._reverse[found] = original
        return found


def deobfuscate(text: str, mapping: dict[str, str]) -> str:
    """Put the originals back: every placeholder in ``mapping`` is replaced."""
    return PLACEHOLDER.sub(lambda m: mapping.get(m.group(), m.group()), text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _is_kept_host(name: str) -> bool:
    lowered = name.lower().rstrip(".")
    if lowered in LOOPBACK_NAMES or lowered.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(lowered.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


__all__ = ["PLACEHOLDER", "Obfuscator", "deobfuscate"]
