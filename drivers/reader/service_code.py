"""ISO/IEC 7813 service codes: what the three digits after the expiry date mean.

Pure data, no I/O. The first digit tells whether the card carries a chip
(``2xx``/``6xx``), so a swipe of such a card is a fallback the sales layer can
flag.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TrackDataError

_INTERCHANGE = {
    "1": ("international", False),
    "2": ("international", True),
    "5": ("national", False),
    "6": ("national", True),
    "7": ("private", False),
    "9": ("test", False),
}
_AUTHORIZATION = {"0": "normal", "2": "by_issuer", "4": "by_issuer_unless_bilateral"}
_SERVICES = {
    "0": ("no_restrictions", "required"),
    "1": ("no_restrictions", "none"),
    "2": ("goods_and_services", "none"),
    "3": ("atm_only", "required"),
    "4": ("cash_only", "none"),
    "5": ("goods_and_services", "required"),
    "6": ("no_restrictions", "if_ped_present"),
    "7": ("goods_and_services", "if_ped_present"),
}


@dataclass(frozen=True)
class ServiceCode:
    code: str
    """The three digits, e.g. ``"101"``; not card data in the PCI sense."""
    interchange: str
    """``international``, ``national``, ``private``, ``test`` or ``reserved``."""
    chip: bool
    """First digit 2 or 6: the card has a chip, a swipe is a fallback."""
    authorization: str
    """``normal``, ``by_issuer``, ``by_issuer_unless_bilateral`` or ``reserved``."""
    services: str
    """``no_restrictions``, ``goods_and_services``, ``atm_only``, ``cash_only``, ``reserved``."""
    pin: str
    """``required``, ``none``, ``if_ped_present`` or ``reserved``."""


def parse_service_code(code: str) -> ServiceCode:
    """Decode a 3-digit service code; reserved digit values are reported, not refused."""
    if len(code) != 3 or not code.isdigit():
        raise TrackDataError("service code must be exactly 3 digits")
    interchange, chip = _INTERCHANGE.get(code[0], ("reserved", False))
    services, pin = _SERVICES.get(code[2], ("reserved", "reserved"))
    return ServiceCode(
        code=code,
        interchange=interchange,
        chip=chip,
        authorization=_AUTHORIZATION.get(code[1], "reserved"),
        services=services,
        pin=pin,
    )
