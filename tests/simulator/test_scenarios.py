"""Scenario files and fault commands: strict validation, timed application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from posedge.simulator.scenarios import (
    ScenarioError,
    ScenarioRunner,
    load_scenario,
    parse_fault_command,
    parse_fault_spec,
)

DEVICES = {"printer": object(), "reader": object()}


class Recorder:
    def __init__(self) -> None:
        self.applied: list[tuple[str, dict[str, Any]]] = []

    def apply_fault(self, name: str, **params: Any) -> None:
        if name == "melt":
            raise ValueError("unknown fault 'melt'")
        self.applied.append((name, params))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_fault_commands_and_specs() -> None:
    assert parse_fault_command("printer slow_response delay_s=0.5 on=true") == (
        "printer",
        "slow_response",
        {"delay_s": 0.5, "on": True},
    )
    assert parse_fault_spec("split:chunk=2") == ("split", {"chunk": 2})
    with pytest.raises(ScenarioError, match="DEVICE FAULT"):
        parse_fault_command("printer")
    with pytest.raises(ScenarioError, match="key=value"):
        parse_fault_command("printer split chunk")


def test_valid_scenario_is_sorted_by_time(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'name = "demo"\n'
        '[[steps]]\nat_s = 2\ndevice = "printer"\nfault = "replug"\n'
        '[[steps]]\nat_s = 0.5\ndevice = "printer"\nfault = "split"\nparams = {chunk = 2}\n',
    )
    scenario = load_scenario(path, DEVICES)
    assert scenario.name == "demo"
    assert [(s.at_s, s.fault, s.params) for s in scenario.steps] == [
        (0.5, "split", {"chunk": 2}),
        (2.0, "replug", {}),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps = []", "non-empty list"),
        ("titel = 'x'\nsteps = []", "unknown top-level key 'titel'"),
        ('[[steps]]\nat_s = 1\ndevice = "printer"\nfaul = "x"', "step 1: unknown key 'faul'"),
        ('[[steps]]\ndevice = "printer"\nfault = "x"', "step 1: missing key 'at_s'"),
        ('[[steps]]\nat_s = "1s"\ndevice = "printer"\nfault = "x"', "step 1: 'at_s' must be"),
        ('[[steps]]\nat_s = -1\ndevice = "printer"\nfault = "x"', "step 1: 'at_s' must be >= 0"),
        ('[[steps]]\nat_s = 1\ndevice = "fax"\nfault = "x"', "step 1: 'device' must be one of"),
        ('[[steps]]\nat_s = 1\ndevice = "printer"\nfault = ""', "step 1: 'fault' must be"),
        ('[[steps]]\nat_s = 1\ndevice = "printer"\nfault = "x"\nparams = 3', "'params' must be"),
        ("steps = [", "not valid TOML"),
    ],
)
def test_invalid_scenarios_name_step_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text), DEVICES)
    assert message in str(info.value)
    assert str(tmp_path / "s.toml") in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "none.toml")


def test_runner_applies_steps_and_reports_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[steps]]\nat_s = 0\ndevice = "printer"\nfault = "paper_out"\n'
        '[[steps]]\nat_s = 0.01\ndevice = "printer"\nfault = "melt"\n'
        '[[steps]]\nat_s = 0.02\ndevice = "reader"\nfault = "unreadable"\nparams = {track = 2}\n',
    )
    printer, reader = Recorder(), Recorder()
    errors: list[str] = []
    runner = ScenarioRunner(
        load_scenario(path, DEVICES),
        {"printer": printer, "reader": reader},
        on_error=lambda step, exc: errors.append(f"{step.fault}: {exc}"),
    )
    runner.start()
    assert runner.done.wait(5.0)
    runner.stop()
    assert printer.applied == [("paper_out", {})]
    assert reader.applied == [("unreadable", {"track": 2})]
    assert errors == ["melt: unknown fault 'melt'"]


def test_runner_stops_before_late_steps(tmp_path: Path) -> None:
    path = write(tmp_path, '[[steps]]\nat_s = 60\ndevice = "printer"\nfault = "paper_out"\n')
    printer = Recorder()
    runner = ScenarioRunner(
        load_scenario(path, DEVICES), {"printer": printer, "reader": Recorder()}
    )
    runner.start()
    runner.stop()
    assert runner.done.is_set() and printer.applied == []
