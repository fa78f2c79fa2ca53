"""CardReader against the VirtualReader over the in-process link, both protocols, every fault."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from posedge.drivers.cardreader import CardReader, SwipeCancelled, SwipeTimeout
from posedge.drivers.errors import (
    DeviceError,
    DeviceTimeout,
    DeviceUnplugged,
    ProtocolError,
    TrackDataError,
)
from posedge.drivers.health import HealthLevel
from posedge.drivers.reader.framed_link import FramedLink
from posedge.drivers.reader.framing import LrcRule
from posedge.drivers.reader.tracks import CardRead, CardUnreadable, TrackQuality
from posedge.drivers.statistics import DeviceStatistics
from posedge.simulator.links.inprocess import InProcessTransport
from posedge.simulator.reader import MASTERCARD_TEST_PAN, VirtualReader

KEY = b"device-token-key-0123456789abcdef"
PROTOCOLS = ["magtek", "framed"]
SWIPE_S = 0.3


@dataclass
class Rig:
    sim: VirtualReader
    reader: CardReader
    stats: DeviceStatistics
    state_dir: Path

    def saved(self) -> dict[str, int]:
        path = self.state_dir / "devices" / "reader-1.stats.json"
        counters: dict[str, int] = json.loads(path.read_text())["counters"]
        return counters


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    sims: list[VirtualReader] = []

    def make(protocol: str, *, sim_kw: dict[str, object] | None = None, **reader_kw: object) -> Rig:
        sim = VirtualReader(protocol, **(sim_kw or {}))  # type: ignore[arg-type]
        sims.append(sim)
        stats = DeviceStatistics(tmp_path, "reader-1")
        options: dict[str, object] = {
            "inter_byte_timeout_s": 0.1,
            "ack_timeout_s": 0.1,
            "response_timeout_s": 0.3,
            "today": lambda: date(2026, 11, 26),
        }
        options.update(reader_kw)
        reader = CardReader(
            InProcessTransport(sim, "sim://reader"),
            protocol=protocol,  # type: ignore[arg-type]
            token_key=KEY,
            device_id="reader-1",
            statistics=stats,
            **options,  # type: ignore[arg-type]
        )
        return Rig(sim, reader, stats, tmp_path)

    yield make
    for sim in sims:
        sim.close()


def in_thread(call: Callable[[], CardRead]) -> tuple[threading.Thread, list[object]]:
    box: list[object] = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def wait_host_waiting(rig: Rig) -> None:
    """Block until read_card is waiting for a swipe (armed / reading)."""
    if rig.reader.protocol == "framed":
        assert rig.sim.wait_until(lambda: rig.sim.armed, 2.0)
    else:
        assert rig.sim.wait_until(lambda: rig.sim.host_reads > 0, 2.0)


# ---- good reads ----------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_good_read_and_statistics_persisted(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.present_card(pan=MASTERCARD_TEST_PAN, expiry="2801", service_code="201")
    with rig.reader.read_card(SWIPE_S) as card:
        assert card.masked_pan == "555555******4444"
        assert card.brand == "mastercard"
        assert card.expiry == "2801" and card.chip_card
        assert card.track_quality == {1: TrackQuality.OK, 2: TrackQuality.OK}
        assert card.sensitive.pan == MASTERCARD_TEST_PAN
    assert card.sensitive.wiped
    assert rig.saved()["GoodCardReadCount"] == 1
    assert DeviceStatistics(rig.state_dir, "reader-1").get("GoodCardReadCount") == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_card_presented_while_waiting(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    thread, box = in_thread(lambda: rig.reader.read_card(2.0))
    wait_host_waiting(rig)
    rig.sim.present_card()
    thread.join(3)
    assert isinstance(box[0], CardRead) and box[0].masked_pan == "411111******1111"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_auto_present(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol, sim_kw={"auto_present": True, "auto_present_delay_s": 0.01})
    assert rig.reader.read_card(1.0).brand == "visa"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_card_fault_presents_chosen_card(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.apply_fault("card", pan=MASTERCARD_TEST_PAN, expiry="2001", service_code="101")
    card = rig.reader.read_card(SWIPE_S)
    assert card.brand == "mastercard" and card.expired


def test_stale_magtek_swipe_is_not_used(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("magtek")
    rig.sim.send(b"\x02%E?;E?\r\x03")  # a swipe nobody asked for, already in the buffer
    rig.sim.present_card()
    assert rig.reader.read_card(SWIPE_S).brand == "visa"


# ---- failed reads ---------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreadable_card(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.apply_fault("unreadable")
    rig.sim.present_card()
    with pytest.raises(CardUnreadable) as err:
        rig.reader.read_card(SWIPE_S)
    assert isinstance(err.value, TrackDataError)
    assert err.value.track_quality == {1: TrackQuality.UNREADABLE, 2: TrackQuality.UNREADABLE}
    assert err.value.url == "sim://reader"
    saved = rig.saved()
    assert saved["FailedReadCount"] == 1 and saved["UnreadableCardCount"] == 1
    assert "GoodCardReadCount" not in saved
    rig.sim.present_card()  # the fault was for one swipe only
    assert rig.reader.read_card(SWIPE_S).brand == "visa"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_unreadable_track_still_reads(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.apply_fault("unreadable", tracks="1")
    rig.sim.present_card()
    card = rig.reader.read_card(SWIPE_S)
    assert card.track_quality == {1: TrackQuality.UNREADABLE, 2: TrackQuality.OK}
    assert not card.has_cardholder_name


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_parse_failure_counted(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.present_card(pan="4111111111111112")  # Luhn fails
    with pytest.raises(CardUnreadable) as err:
        rig.reader.read_card(SWIPE_S)
    assert err.value.track_quality == {1: TrackQuality.BAD_PAN, 2: TrackQuality.BAD_PAN}
    assert "4111" not in str(err.value)
    saved = rig.saved()
    assert saved["FailedDataParseCount"] == 1 and saved["FailedReadCount"] == 1


def test_missing_start_sentinel_counted(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("magtek")
    thread, box = in_thread(lambda: rig.reader.read_card(2.0))
    wait_host_waiting(rig)
    rig.sim.send(b"\x02B4111111111111111^DOE/J^2912101?;4111111111111111=2912101?\r\x03")
    thread.join(3)
    assert isinstance(box[0], CardRead)
    assert box[0].track_quality[1] is TrackQuality.NO_START_SENTINEL
    assert rig.saved()["MissingStartSentinelTrack1Count"] == 1


def test_magtek_track_lrc_error_counted(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("magtek", track_lrc=True)
    rig.sim.apply_fault("bad_lrc", tracks="1")
    rig.sim.present_card(with_lrc=True)
    card = rig.reader.read_card(SWIPE_S)
    assert card.track_quality == {1: TrackQuality.BAD_LRC, 2: TrackQuality.OK}
    assert rig.saved()["ParityLRCErrorTrack1Count"] == 1
    rig.sim.apply_fault("bad_lrc", tracks="1,2")
    rig.sim.present_card(with_lrc=True)
    with pytest.raises(CardUnreadable):
        rig.reader.read_card(SWIPE_S)
    assert rig.saved()["ParityLRCErrorTrack2Count"] == 1


# ---- framed: ACK/NAK ---------------------------------------------------------------
def test_bad_frame_lrc_then_retransmit_succeeds(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    rig.sim.apply_fault("bad_lrc", count=2)
    rig.sim.present_card()
    assert rig.reader.read_card(SWIPE_S).brand == "visa"
    assert rig.sim.naks_received == 2
    assert rig.saved()["CommunicationErrorCount"] == 2


def test_bad_frame_lrc_forever_is_protocol_error(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    rig.sim.apply_fault("bad_lrc", count=100)
    with pytest.raises(ProtocolError, match="4 bad frames"):
        rig.reader.status()
    assert rig.sim.naks_received == 4


def test_nak_storm_within_retries(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    rig.sim.apply_fault("nak_storm", count=3)
    assert rig.reader.status().state == "idle"
    assert rig.sim.naks_sent == 3
    assert rig.stats.get("CommunicationErrorCount") == 3


def test_nak_storm_beyond_three_retries(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    rig.sim.apply_fault("nak_storm", count=4)
    rig.sim.present_card()
    with pytest.raises(ProtocolError, match="NAK") as err:
        rig.reader.read_card(SWIPE_S)
    assert not isinstance(err.value, TrackDataError)
    assert rig.sim.naks_sent == 4
    assert rig.sim.host_messages == []


def test_lrc_rule_mismatch_is_reported(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed", lrc_rule=LrcRule(seed=0x7F))
    with pytest.raises(ProtocolError, match="LRC settings"):
        rig.reader.status()


def test_lrc_rule_parameters_agree(make_rig: Callable[..., Rig]) -> None:
    rule = LrcRule(include_stx=True, include_etx=False, seed=0x7F)
    rig = make_rig("framed", lrc_rule=rule, sim_kw={"lrc_rule": rule})
    rig.sim.present_card()
    assert rig.reader.read_card(SWIPE_S).brand == "visa"


def test_partial_frame_inter_byte_timeout_naks(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    link = FramedLink(rig.reader.transport, inter_byte_timeout_s=0.05)
    rig.sim.send(b"\x02SI")  # STX and message, then silence
    assert link.receive(0.3) is None
    assert rig.sim.naks_received == 1


def test_unknown_reply_error_code(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    with pytest.raises(ProtocolError, match="unknown command"):
        rig.reader._request(b"Z", b"Z")


# ---- byte-level faults ----------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_response(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.apply_fault("no_response")
    rig.sim.present_card()
    with pytest.raises(DeviceTimeout) as err:
        rig.reader.read_card(SWIPE_S)
    if protocol == "framed":
        assert type(err.value) is DeviceTimeout
        assert "did not acknowledge" in str(err.value)
        assert rig.saved()["CommunicationErrorCount"] == 4
    else:
        assert isinstance(err.value, SwipeTimeout)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "fault",
    [
        {"name": "garbage", "hex": "ff00a5", "repeat": True},
        {"name": "garbage", "hex": "0615ff03"},
        {"name": "split", "chunk": 1, "gap_s": 0.0},
        {"name": "split", "chunk": 5, "gap_s": 0.002},
    ],
)
def test_garbage_and_split_tolerated(
    make_rig: Callable[..., Rig], protocol: str, fault: dict[str, object]
) -> None:
    rig = make_rig(protocol)
    params = dict(fault)
    rig.sim.apply_fault(str(params.pop("name")), **params)
    rig.sim.present_card()
    assert rig.reader.read_card(SWIPE_S).masked_pan == "411111******1111"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_slow_response_within_timeouts(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.apply_fault("slow_response", delay_s=0.03)
    rig.sim.present_card()
    assert rig.reader.read_card(SWIPE_S).brand == "visa"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_slow_response_outside_timeouts(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol, ack_timeout_s=0.03)
    rig.sim.apply_fault("slow_response", delay_s=0.5)
    rig.sim.present_card()
    with pytest.raises(DeviceTimeout):
        rig.reader.read_card(0.1)


# ---- cancel, swipe timeout, unplug --------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cancel_during_read(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    thread, box = in_thread(lambda: rig.reader.read_card(5.0))
    wait_host_waiting(rig)
    rig.reader.cancel()
    thread.join(2)
    assert isinstance(box[0], SwipeCancelled)
    if protocol == "framed":
        assert rig.sim.host_messages[-1] == b"C" and not rig.sim.armed


def test_cancel_when_idle_disarms_reader(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    rig.reader.cancel()
    assert rig.sim.host_messages == [b"C"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_swipe_timeout(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    with pytest.raises(SwipeTimeout, match="nothing was read"):
        rig.reader.read_card(0.15)
    assert "FailedReadCount" not in rig.stats.snapshot()
    if protocol == "framed":
        assert not rig.sim.armed


def test_no_card_fault_keeps_auto_present_away(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed", sim_kw={"auto_present": True, "auto_present_delay_s": 0.01})
    rig.sim.apply_fault("no_card")
    with pytest.raises(SwipeTimeout):
        rig.reader.read_card(0.1)
    rig.sim.apply_fault("no_card", on=False)
    assert rig.reader.read_card(0.5).brand == "visa"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unplugged_before_read(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.apply_fault("unplug")
    with pytest.raises(DeviceUnplugged):
        rig.reader.read_card(SWIPE_S)
    assert rig.saved() == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unplugged_mid_read(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    thread, box = in_thread(lambda: rig.reader.read_card(5.0))
    wait_host_waiting(rig)
    rig.sim.unplug()
    thread.join(2)
    assert isinstance(box[0], DeviceUnplugged)


# ---- status and health -------------------------------------------------------------------
def test_status(make_rig: Callable[..., Rig]) -> None:
    assert make_rig("framed").reader.status().as_dict() == {
        "online": True,
        "state": "idle",
        "protocol": "framed",
    }
    assert make_rig("magtek").reader.status().state == "unknown"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_internal(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    result = rig.reader.check_health("internal")
    assert result.ok and result.text == "Internal HCheck: Successful"
    rig.sim.unplug()
    result = rig.reader.check_health(HealthLevel.INTERNAL)
    assert not result.ok and result.text.startswith("Internal HCheck: ")


def test_health_internal_framed_no_response(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    rig.sim.apply_fault("no_response")
    result = rig.reader.check_health("internal")
    assert not result.ok and "did not acknowledge" in result.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_external(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol)
    rig.sim.present_card()
    result = rig.reader.check_health("external", timeout_s=SWIPE_S)
    assert result.ok and result.text == "External HCheck: Successful"
    assert result.details["masked_pan"] == "411111******1111"
    assert "4111111111111111" not in json.dumps(result.as_dict())
    result = rig.reader.check_health("external", timeout_s=0.1)
    assert not result.ok and "no card was swiped" in result.text


def test_health_interactive(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    questions: list[str] = []

    def confirm(question: str) -> bool:
        questions.append(question)
        return True

    rig.sim.present_card()
    result = rig.reader.check_health("interactive", timeout_s=SWIPE_S, confirm=confirm)
    assert result.ok and "411111******1111" in questions[0]
    rig.sim.present_card()
    result = rig.reader.check_health("interactive", timeout_s=SWIPE_S, confirm=lambda q: False)
    assert not result.ok and "did not confirm" in result.text
    assert not rig.reader.check_health("interactive").ok  # no callback


def test_errors_never_carry_card_data(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("framed")
    rig.sim.present_card(pan="4111111111111112")
    with pytest.raises(DeviceError) as err:
        rig.reader.read_card(SWIPE_S)
    assert "4111" not in str(err.value) and "TEST" not in str(err.value)


def test_constructor_validation() -> None:
    sim = VirtualReader("framed")
    transport = InProcessTransport(sim, "sim://reader")
    with pytest.raises(ValueError):
        CardReader(transport, token_key=b"short")
    with pytest.raises(ValueError):
        CardReader(transport, token_key=KEY, protocol="bogus")  # type: ignore[arg-type]
    reader = CardReader(transport, token_key=KEY)
    with pytest.raises(ValueError):
        reader.read_card(0)
    reader.close()
    assert not transport.is_open
