"""60-posedge.rules: parses, and covers every model in drivers/discovery.py's table.

`udevadm verify` exists only from systemd 254; where it is missing, the
structural parser below is the check (it is run everywhere anyway).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from posedge.drivers.discovery import KNOWN_MODELS, KnownModel

RULES = Path(__file__).resolve().parents[2] / "systemd" / "60-posedge.rules"

_TOKEN = re.compile(
    r'\s*(?P<key>[A-Z]+(?:\{[A-Za-z0-9_.-]+\})?)\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"\s*'
)
MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "DRIVER", "ATTR", "ATTRS", "ENV", "SUBSYSTEMS"}
ASSIGN_KEYS = {"MODE", "GROUP", "OWNER", "SYMLINK", "GOTO", "LABEL", "TAG", "ENV", "OPTIONS"}


@dataclass(frozen=True)
class Rule:
    line_no: int
    matches: dict[str, tuple[str, str]]
    """key → (operator, value) for == and !=."""
    assigns: dict[str, tuple[str, str]]


def parse_rules(text: str) -> list[Rule]:
    """A structural udev rules parser: every token is KEY op "value", comma-separated."""
    rules = []
    logical = text.replace("\\\n", "")
    for line_no, raw in enumerate(logical.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        matches: dict[str, tuple[str, str]] = {}
        assigns: dict[str, tuple[str, str]] = {}
        for part in line.split(","):
            token = _TOKEN.fullmatch(part)
            assert token, f"line {line_no}: cannot parse {part!r}"
            key, op, value = token["key"], token["op"], token["value"]
            base = key.split("{")[0]
            target = matches if op in ("==", "!=") else assigns
            allowed = MATCH_KEYS if target is matches else ASSIGN_KEYS
            assert base in allowed, f"line {line_no}: {key}{op} is not a valid udev {op} key"
            assert key not in target, f"line {line_no}: {key} twice"
            target[key] = (op, value)
        rules.append(Rule(line_no, matches, assigns))
    return rules


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return parse_rules(RULES.read_text())


def test_rules_are_well_formed(rules: list[Rule]) -> None:
    labels = [r.assigns["LABEL"][1] for r in rules if "LABEL" in r.assigns]
    gotos = [r.assigns["GOTO"][1] for r in rules if "GOTO" in r.assigns]
    assert labels == ["posedge_end"] and set(gotos) == {"posedge_end"}
    assert "LABEL" in rules[-1].assigns, "the end label must come after every rule"
    for rule in rules:
        if "GOTO" in rule.assigns or "LABEL" in rule.assigns:
            continue
        assert rule.assigns["MODE"] == ("=", "0660"), rule
        assert rule.assigns["GROUP"] == ("=", "posedge"), rule
        for key in ("ATTR{idVendor}", "ATTRS{idVendor}", "ATTR{idProduct}", "ATTRS{idProduct}"):
            if key in rule.matches:
                # sysfs prints lower-case hex; "04B8" would silently never match.
                assert re.fullmatch(r"[0-9a-f]{4}", rule.matches[key][1]), rule
        if "SYMLINK" in rule.assigns:
            assert rule.assigns["SYMLINK"] in {("+=", "posedge/printer"), ("+=", "posedge/reader")}
            assert rule.matches["SUBSYSTEM"] == ("==", "tty"), "only serial nodes get a name"


def _rule_for(rules: list[Rule], model: KnownModel, subsystem: str, attr: str) -> Rule | None:
    for rule in rules:
        m = rule.matches
        if m.get("SUBSYSTEM") != ("==", subsystem):
            continue
        if m.get(f"{attr}{{idVendor}}") != ("==", f"{model.vendor_id:04x}"):
            continue
        product = m.get(f"{attr}{{idProduct}}")
        wanted = None if model.product_id is None else ("==", f"{model.product_id:04x}")
        if product == wanted:
            return rule
    return None


@pytest.mark.parametrize("model", KNOWN_MODELS, ids=lambda m: m.name)
def test_every_known_model_has_its_rules(rules: list[Rule], model: KnownModel) -> None:
    tty = _rule_for(rules, model, "tty", "ATTRS")
    assert tty is not None, f"no tty rule for {model.name}"
    if model.kind == "usb-serial":
        assert "SYMLINK" not in tty.assigns  # an adapter does not say what is behind it
        return
    assert tty.assigns["SYMLINK"] == ("+=", f"posedge/{model.kind}")
    usb = _rule_for(rules, model, "usb", "ATTR")
    assert usb is not None, f"no USB device rule for {model.name}"
    assert usb.matches["ENV{DEVTYPE}"] == ("==", "usb_device")


def test_the_parser_rejects_broken_rules() -> None:
    with pytest.raises(AssertionError):
        parse_rules('SUBSYSTEM=="tty", GROUP=="posedge"\n')  # a match on an assign-only key
    with pytest.raises(AssertionError):
        parse_rules('SUBSYSTEM=="tty" MODE="0660"\n')  # missing comma
    with pytest.raises(AssertionError):
        parse_rules('SUBSYSTEM=="tty", MODE=0660\n')  # unquoted value


def _udevadm_can_verify() -> bool:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        return False
    probe = subprocess.run([udevadm, "verify", "--help"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _udevadm_can_verify(), reason="udevadm verify needs systemd >= 254")
def test_udevadm_verify_accepts_the_rules() -> None:
    result = subprocess.run(
        ["udevadm", "verify", "--resolve-names=never", str(RULES)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
