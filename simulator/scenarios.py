"""Fault commands and scenario files for the simulator.

A fault command is one line, ``DEVICE FAULT [key=value ...]`` (e.g.
``printer slow_response delay_s=0.5``); a fault spec, as in
``sim://printer?faults=slow_response:delay_s=0.5``, is ``FAULT[:key=value…]``.
A scenario file is TOML with a list of steps applied on a timer::

    name = "paper runs out mid-shift"
    [[steps]]
    at_s = 0.5
    device = "printer"
    fault = "paper_out"
    params = {}

Files are validated strictly: every error names the step and the key.

A JSON file is a device dump instead (``posedge devices dump`` or SIGUSR1 wrote it,
docs/diagnostics.md): :func:`load_replay` reads it and :mod:`posedge.simulator.replay`
rebuilds the printer and reader in the dumped state, so a field problem becomes a lab
set-up. This module must never touch real devices or apply faults itself outside
:class:`ScenarioRunner`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .replay import Replay

log = logging.getLogger("posedge.simulator.scenarios")

STEP_KEYS = ("at_s", "device", "fault", "params")
TOP_LEVEL_KEYS = ("name", "description", "steps")


class FaultTarget(Protocol):
    def apply_fault(self, name: str, **params: Any) -> None: ...


class ScenarioError(ValueError):
    """A scenario file or fault command that cannot be used; the message says where."""


@dataclass(frozen=True)
class ScenarioStep:
    at_s: float
    device: str
    fault: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    steps: tuple[ScenarioStep, ...]
    name: str = ""
    description: str = ""


# ---- fault commands ---------------------------------------------------------
def parse_param_value(text: str) -> Any:
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"`` → True, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_params(tokens: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ScenarioError(f"expected key=value, got {token!r}")
        params[key] = parse_param_value(value)
    return params


def parse_fault_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"slow_response:delay_s=0.5"`` → ("slow_response", {"delay_s": 0.5})."""
    name, *tokens = spec.strip().split(":")
    if not name:
        raise ScenarioError(f"empty fault name in {spec!r}")
    return name, parse_params(tokens)


def parse_fault_command(line: str) -> tuple[str, str, dict[str, Any]]:
    """``"printer paper_out"`` → ("printer", "paper_out", {})."""
    words = line.split()
    if len(words) < 2:
        raise ScenarioError(
            f"expected 'DEVICE FAULT [key=value ...]' (e.g. 'printer paper_out'), got {line!r}"
        )
    return words[0], words[1], parse_params(words[2:])


# ---- scenario files ---------------------------------------------------------
def load_scenario(path: Path, devices: Mapping[str, object] | None = None) -> Scenario:
    """Read and validate a scenario file; ``devices`` (if given) are the allowed names."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return parse_scenario(document, source=str(path), devices=devices)


def parse_scenario(
    document: Mapping[str, Any], *, source: str = "scenario", devices: Mapping[str, object] | None
) -> Scenario:
    unknown = sorted(set(document) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ScenarioError(
            f"{source}: unknown top-level key {unknown[0]!r}; allowed: {', '.join(TOP_LEVEL_KEYS)}"
        )
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{source}: 'steps' must be a non-empty list of tables ([[steps]])")
    parsed = tuple(
        _parse_step(step, f"{source}: step {i}", devices) for i, step in enumerate(steps, 1)
    )
    return Scenario(
        steps=tuple(sorted(parsed, key=lambda s: s.at_s)),
        name=_optional_str(document, "name", source),
        description=_optional_str(document, "description", source),
    )


def _optional_str(document: Mapping[str, Any], key: str, where: str) -> str:
    value = document.get(key, "")
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: {key!r} must be a string, got {value!r}")
    return value


def _parse_step(step: Any, where: str, devices: Mapping[str, object] | None) -> ScenarioStep:
    if not isinstance(step, dict):
        raise ScenarioError(f"{where}: must be a table like {{at_s=0.5, device=..., fault=...}}")
    unknown = sorted(set(step) - set(STEP_KEYS))
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(STEP_KEYS)}")
    for key in ("at_s", "device", "fault"):
        if key not in step:
            raise ScenarioError(f"{where}: missing key {key!r}")
    at_s = step["at_s"]
    if isinstance(at_s, bool) or not isinstance(at_s, int | float) or not math.isfinite(at_s):
        raise ScenarioError(f"{where}: 'at_s' must be a number of seconds, got {at_s!r}")
    if at_s < 0:
        raise ScenarioError(f"{where}: 'at_s' must be >= 0, got {at_s!r}")
    device, fault = step["device"], step["fault"]
    if not isinstance(device, str) or (devices is not None and device not in devices):
        allowed = ", ".join(sorted(devices)) if devices is not None else "a device name"
        raise ScenarioError(f"{where}: 'device' must be one of {allowed}, got {device!r}")
    if not isinstance(fault, str) or not fault:
        raise ScenarioError(f"{where}: 'fault' must be a non-empty string, got {fault!r}")
    params = step.get("params", {})
    if not isinstance(params, dict):
        raise ScenarioError(f"{where}: 'params' must be a table, got {params!r}")
    return ScenarioStep(float(at_s), device, fault, dict(params))


# ---- device dumps --------------------------------------------------------------
def is_replay(path: Path) -> bool:
    """True when the ``--scenario`` file is a device dump (JSON), not a TOML step list."""
    from .replay import is_device_dump

    return is_device_dump(path)


def load_replay(path: Path) -> Replay:
    """The simulated devices a device dump describes; ScenarioError says where it is bad."""
    from .replay import ReplayError, load_dump_file, replay

    try:
        return replay(load_dump_file(path))
    except ReplayError as exc:
        raise ScenarioError(str(exc)) from None


# ---- running ----------------------------------------------------------------
ErrorHandler = Callable[[ScenarioStep, Exception], None]


class ScenarioRunner:
    """Applies a scenario's steps to named devices on a timer thread."""

    def __init__(
        self,
        scenario: Scenario,
        devices: Mapping[str, FaultTarget],
        *,
        on_error: ErrorHandler | None = None,
        on_applied: Callable[[ScenarioStep], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.devices = devices
        self._on_error = on_error
        self._on_applied = on_applied
        self._stop = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scenario", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for step in self.scenario.steps:
                if self._stop.wait(max(0.0, started + step.at_s - time.monotonic())):
                    return
                self._apply(step)
        finally:
            self.done.set()

    def _apply(self, step: ScenarioStep) -> None:
        try:
            self.devices[step.device].apply_fault(step.fault, **step.params)
        except (KeyError, ValueError, TypeError) as exc:
            if self._on_error is None:
                log.error("scenario step at %.3gs failed: %s", step.at_s, exc)
            else:
                self._on_error(step, exc)
            return
        if self._on_applied is not None:
            self._on_applied(step)
