"""PAN tokens: no full card number can be rebuilt from the state directory (issue 11, item 1).

A real lane journals card reads (the reader built by :func:`posedge.agent.devices.open_reader`,
as the daemon builds it, over an in-process simulated reader, authorizations by the
reference back office). Then the test plays the attacker who holds the whole state
directory: for each masked PAN it enumerates every Luhn-valid number the mask allows
and, with every file as key material (its bytes, and every key the code derives from a
file), computes the token each candidate would have. No candidate may reproduce a
stored token, nor any other 64-hex value stored anywhere in the state directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import re
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from posedge.agent.cardtokens import PanTokenKey, pan_token_key
from posedge.agent.devices import open_reader
from posedge.agent.journal import Journal
from posedge.agent.journal.chain import DeviceKey
from posedge.agent.sales.authorizer import Authorizer
from posedge.agent.sales.engine import SaleEngine
from posedge.agent.sales.model import SaleState
from posedge.agent.sync import BackofficeClient
from posedge.backoffice.policy import AuthorizationPolicy
from posedge.drivers.cardreader import CardReader
from posedge.drivers.printer import ReceiptPrinter
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device
from posedge.simulator.backoffice import BackofficeServer
from posedge.simulator.links.inprocess import InProcessTransport
from posedge.simulator.printer import VirtualPrinter
from posedge.simulator.reader import VirtualReader

from .sales.lane import Lane, lane_config

TEST_PANS = ("4111111111111111", "5555555555554444")
APPROVED_AMOUNT = 1234
DECLINED_AMOUNT = 5000  # over the back office's decline_over below
HEX64 = re.compile(rb"[0-9a-fA-F]{64}")


# ---- the flow ------------------------------------------------------------------------
def journal_card_reads(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    """Sell with each test card: one approval, then two declines of the same card.

    Returns the state directory and the ``card.read`` payloads, in journal order.
    """
    state = tmp_path / "state"
    name = f"tokens-{uuid.uuid4().hex[:8]}"
    vreader = VirtualReader("magtek")
    register_sim_device(name, vreader)
    config = lane_config(reader={"url": f"sim://{name}", "swipe_timeout": "5s"})

    async def main() -> None:
        journal = Journal.open(state)
        # as under ``run --simulate``: the back office's database in the state directory
        backoffice = BackofficeServer(state / "backoffice.sqlite3").start()
        backoffice.config.policy = AuthorizationPolicy(decline_over=2000)
        client = BackofficeClient(backoffice.url, "lane-t", config.sync)
        vprinter = VirtualPrinter()
        printer = ReceiptPrinter(InProcessTransport(vprinter, "sim://printer"))
        reader = open_reader(config, state)  # what the daemon does
        engine = SaleEngine(
            journal=journal, config=config, state_dir=state, reader=reader, printer=printer,
            authorizer=Authorizer(client, 1.0),
        )  # fmt: skip
        lane = Lane(engine, journal, vprinter, vreader, backoffice, client)
        await engine.start()
        try:
            for pan in TEST_PANS:
                for amount, state_after in (
                    (APPROVED_AMOUNT, SaleState.APPROVED),
                    (DECLINED_AMOUNT, SaleState.DECLINED),
                    (DECLINED_AMOUNT, SaleState.DECLINED),
                ):
                    vreader.present_card(pan=pan)
                    view = await lane.sale(amount)
                    assert view.state == state_after, view
        finally:
            await engine.stop(5)
            vreader.close()
            client.close()
            backoffice.close()
            journal.close()

    try:
        asyncio.run(main())
    finally:
        unregister_sim_device(name)
    with Journal.open(state, readonly=True) as journal:
        reads = [e.payload for e in journal.iter_events() if e.type == "card.read"]
    return state, reads


# ---- the attacker ----------------------------------------------------------------------
class FastHmacSha256:
    """HMAC-SHA256 under one key, inner and outer pads hashed once (RFC 2104)."""

    BLOCK = 64

    def __init__(self, key: bytes) -> None:
        if len(key) > self.BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(self.BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hits(self, messages: list[bytes], stored: set[bytes]) -> list[bytes]:
        """The messages whose MAC is in ``stored`` (:meth:`digest` inlined: 10^5 a card)."""
        inner_copy, outer_copy = self._inner.copy, self._outer.copy
        found = []
        for message in messages:
            inner = inner_copy()
            inner.update(message)
            outer = outer_copy()
            outer.update(inner.digest())
            if outer.digest() in stored:
                found.append(message)
        return found


def luhn_candidates(masked: str) -> list[str]:
    """Every Luhn-valid number the masked form allows (hidden digits filled in).

    The last hidden digit's Luhn contribution is a permutation of 0-9, so each
    filling of the other hidden digits has exactly one valid completion: solving
    for it gives all 10^(hidden-1) valid candidates without testing 10^hidden.
    """
    hidden = [i for i, c in enumerate(masked) if not c.isdigit()]
    assert masked[:6].isdigit() and masked[-4:].isdigit() and hidden, masked

    def weight(index: int, digit: int) -> int:
        value = digit * (2 if (len(masked) - 1 - index) % 2 else 1)
        return value - 9 if value > 9 else value

    known = sum(weight(i, int(c)) for i, c in enumerate(masked) if c.isdigit())
    *free, last = hidden
    completion = {weight(last, d) % 10: str(d) for d in range(10)}
    assert len(completion) == 10  # a permutation
    digits = list(masked)
    out = []
    for fill in itertools.product(range(10), repeat=len(free)):
        total = known
        for index, digit in zip(free, fill, strict=True):
            digits[index] = str(digit)
            total += weight(index, digit)
        digits[last] = completion[-total % 10]
        out.append("".join(digits))
    return out


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def files_under(state: Path) -> Iterator[Path]:
    return (p for p in sorted(state.rglob("*")) if p.is_file())


def key_material(state: Path) -> dict[bytes, str]:
    """Every HMAC key to try, each with where it came from: every file's bytes, and every
    key the code derives from a file (the device key's purposes, the vault key's)."""
    keys: dict[bytes, str] = {}
    for path in files_under(state):
        name = str(path.relative_to(state))
        raw = path.read_bytes()
        variants = {"bytes": raw, "stripped": raw.strip()}
        if re.fullmatch(rb"(?:[0-9a-fA-F]{2})+", variants["stripped"]):
            variants["hex-decoded"] = bytes.fromhex(variants["stripped"].decode())
        for label, material in variants.items():
            if not material:
                continue
            derived = {f"{name} ({label})": material}
            for purpose in ("pan-token", "chain"):  # DeviceKey.derive, old and current uses
                derived[f"{name} ({label}) derive({purpose})"] = DeviceKey(material).derive(purpose)
            for purpose in (b"posedge/vault/aes-256-gcm", b"posedge/vault/key-id"):
                mac = hmac.new(material, purpose, hashlib.sha256).digest()
                derived[f"{name} ({label}) {purpose.decode()}"] = mac
            for where, key in derived.items():
                keys.setdefault(key, where)
    return keys


def stored_values(state: Path) -> set[bytes]:
    """Every 64-hex value stored anywhere under the state directory, as 32 raw bytes."""
    found: set[bytes] = set()
    for path in files_under(state):
        raw = path.read_bytes()
        found.update(bytes.fromhex(m.decode()) for m in HEX64.findall(raw))
    return found


# ---- the tests -------------------------------------------------------------------------
def test_same_card_has_one_token_within_the_process_and_day(tmp_path: Path) -> None:
    _state, reads = journal_card_reads(tmp_path)
    by_card: dict[object, set[object]] = {}
    for payload in reads:
        by_card.setdefault(payload["masked_pan"], set()).add(payload["pan_token"])
    assert sorted(by_card) == ["411111******1111", "555555******4444"]
    assert all(len(tokens) == 1 for tokens in by_card.values()), by_card  # repeats match
    tokens = [next(iter(t)) for t in by_card.values()]
    assert tokens[0] != tokens[1]
    assert all(isinstance(t, str) and re.fullmatch(r"[0-9a-f]{64}", t) for t in tokens)


def test_fast_hmac_is_hmac_sha256() -> None:
    for key in (b"k" * 16, b"k" * 32, b"k" * 64, b"k" * 65, bytes(range(256)) * 40):
        expected = hmac.new(key, b"4111111111111111", hashlib.sha256).digest()
        assert FastHmacSha256(key).digest(b"4111111111111111") == expected
        assert FastHmacSha256(key).hits([b"4111111111111111", b"x"], {expected}) == [
            b"4111111111111111"
        ]


def test_no_pan_the_mask_allows_reproduces_a_stored_token(tmp_path: Path) -> None:
    state, reads = journal_card_reads(tmp_path)
    assert len(reads) == 3 * len(TEST_PANS)
    tokens = {bytes.fromhex(str(p["pan_token"])) for p in reads}
    stored = stored_values(state)
    assert tokens <= stored  # the journal file itself holds the tokens
    keys = key_material(state)
    assert {"device.key (bytes)", "vault.key (bytes)"} <= set(keys.values())
    masks = sorted({str(p["masked_pan"]) for p in reads})
    assert masks == ["411111******1111", "555555******4444"]
    for masked in masks:
        # the mask shows at most the first 6 and the last 4 digits
        assert sum(c.isdigit() for c in masked) <= 10
        candidates = [c.encode() for c in luhn_candidates(masked)]
        assert len(set(candidates)) == 10 ** (masked.count("*") - 1)  # one in ten is valid
        assert all(luhn(c.decode()) for c in candidates)
        for key, label in keys.items():
            hits = FastHmacSha256(key).hits(candidates, stored)
            assert not hits, f"a stored value is the HMAC of a candidate PAN under {label}"
    for pan in TEST_PANS:
        for path in files_under(state):
            assert pan.encode() not in path.read_bytes(), path


# ---- the key: memory only, one per process and UTC day --------------------------------
def test_the_key_is_random_per_process_window_and_rotates_at_utc_midnight() -> None:
    day = [date(2026, 3, 1)]
    key = PanTokenKey(today=lambda: day[0])
    assert key.window is None
    first = key()
    assert len(first) == 32 and key() == first and key.window == date(2026, 3, 1)
    day[0] = date(2026, 3, 2)
    second = key()
    assert second != first and key() == second and key.window == date(2026, 3, 2)
    assert PanTokenKey(today=lambda: date(2026, 3, 2))() != second  # another process
    assert first.hex() not in repr(key) and second.hex() not in repr(key)
    assert pan_token_key() is pan_token_key()  # one per process: reopened readers agree


def test_a_reader_asks_the_key_source_at_every_read() -> None:
    day = [date(2026, 3, 1)]
    device = VirtualReader("magtek")
    reader = CardReader(
        InProcessTransport(device, "sim://reader"), token_key=PanTokenKey(today=lambda: day[0])
    )

    def token() -> str:
        device.present_card(pan=TEST_PANS[0])
        with reader.read_card(5) as card:
            return card.pan_token

    try:
        monday = token()
        assert token() == monday  # the same card within the window
        day[0] = date(2026, 3, 2)
        tuesday = token()
        assert tuesday != monday and token() == tuesday
    finally:
        reader.close()
        device.close()
