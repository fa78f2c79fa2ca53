"""The ESC/POS command table: every command's bytes, argument checks, prefix matching."""

from __future__ import annotations

import pytest

from posedge.drivers.escpos import commands as cmd

EXPECTED = {
    ("line_feed", ()): "0a",
    ("carriage_return", ()): "0d",
    ("init", ()): "1b40",
    ("justify", (1,)): "1b6101",
    ("bold", (1,)): "1b4501",
    ("underline", (2,)): "1b2d02",
    ("char_size", (0x11,)): "1d2111",
    ("code_page", (19,)): "1b7413",
    ("feed_lines", (3,)): "1b6403",
    ("cut_full", ()): "1d5600",
    ("cut_partial", ()): "1d5601",
    ("cut_full_ascii", ()): "1d5630",
    ("cut_partial_ascii", ()): "1d5631",
    ("feed_cut_full", (5,)): "1d564105",
    ("feed_cut_partial", (0,)): "1d564200",
    ("drawer_kick", (0, 25, 50)): "1b70001932",
    ("barcode_height", (80,)): "1d6850",
    ("barcode_width", (3,)): "1d7703",
    ("barcode_hri", (2,)): "1d4802",
    ("qr_model", (50, 0)): "1d286b040031413200",
    ("qr_module_size", (6,)): "1d286b0300314306",
    ("qr_ecc", (49,)): "1d286b0300314531",
    ("qr_print", ()): "1d286b0300315130",
    ("realtime_status", (4,)): "100404",
    ("realtime_recover", (2,)): "100502",
    ("transmit_status", (1,)): "1d7201",
    ("auto_status_back", (15,)): "1d610f",
}


@pytest.mark.parametrize(("name", "args"), list(EXPECTED))
def test_fixed_command_bytes(name: str, args: tuple[int, ...]) -> None:
    assert cmd.build(name, *args).hex() == EXPECTED[(name, args)]


def test_every_fixed_command_is_covered() -> None:
    fixed = {c.name for c in cmd.COMMANDS.values() if c.payload is None}
    assert fixed == {name for name, _ in EXPECTED}


def test_every_command_has_help() -> None:
    assert all(c.help and c.prefix for c in cmd.COMMANDS.values())


def test_payload_commands() -> None:
    assert cmd.build_payload("barcode_code128", b"{BAB").hex() == "1d6b49047b424142"
    assert cmd.build_payload("barcode_ean13", b"4006381333931")[:4].hex() == "1d6b430d"
    # QR store: pL + 256 pH = len(data) + 3
    assert cmd.qr_store(b"x" * 300)[:8].hex() == "1d286b2f01315030"


def test_argument_range_is_checked() -> None:
    with pytest.raises(ValueError, match=r"realtime_status: n=5 outside 1\.\.4"):
        cmd.build("realtime_status", 5)
    with pytest.raises(TypeError, match="takes 1 argument"):
        cmd.build("bold")
    with pytest.raises(TypeError, match="payload"):
        cmd.build("barcode_code128", 1)
    with pytest.raises(ValueError, match=r"1\.\.255"):
        cmd.build_payload("barcode_code128", b"")
    with pytest.raises(TypeError, match="fixed"):
        cmd.build_payload("init", b"x")


@pytest.mark.parametrize(
    ("width", "height", "value"), [(1, 1, 0x00), (2, 1, 0x10), (1, 2, 0x01), (8, 8, 0x77)]
)
def test_size_byte(width: int, height: int, value: int) -> None:
    assert cmd.size_byte(width, height) == value


def test_size_byte_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="9x1"):
        cmd.size_byte(9, 1)


def test_match_longest_prefix_and_incomplete() -> None:
    found = cmd.match(bytes.fromhex("1d286b0300314306"), 0)
    assert isinstance(found, cmd.Command) and found.name == "qr_module_size"
    found = cmd.match(bytes.fromhex("1d286b0500315030"), 0)
    assert isinstance(found, cmd.Command) and found.name == "gs_paren_k"
    assert cmd.match(b"\x1b", 0) is True
    assert cmd.match(b"\x1d\x28\x6b\x03", 0) is True
    assert cmd.match(b"\x1b\x99", 0) is None
