"""Build the receipt printer and card reader from configuration.

The one place where config keys (``printer.*``, ``reader.*``, DESIGN §3) turn
into driver objects: serial settings → :class:`SerialParams`, durations →
seconds, code page, columns, reader protocol, LRC rule, timeouts, statistics
persisted under the state directory and the process's in-memory PAN-token key
(:mod:`posedge.agent.cardtokens`; never a file).

A missing URL is a :class:`ConfigError` (exit 2) naming the key and the option
to set. Opening errors stay the drivers' typed errors
(:mod:`posedge.drivers.errors`); callers decide the exit code. This module
must never open a device the caller did not ask for, never hold card data and
never touch the journal or any key file.
"""

from __future__ import annotations

from pathlib import Path

from posedge.drivers.cardreader import CardReader
from posedge.drivers.escpos.codepages import CodePage
from posedge.drivers.printer import ReceiptPrinter
from posedge.drivers.reader.framing import LrcRule
from posedge.drivers.statistics import DeviceStatistics
from posedge.drivers.transport import SerialParams, Transport, open_transport
from posedge.drivers.transport.reconnect import ReconnectingTransport

from .cardtokens import pan_token_key
from .config import Config, ReaderConfig, SerialSettings, parse_duration
from .errors import ConfigError

STATS_SAVE_INTERVAL_S = 5.0
"""A busy lane saves device counters at most this often (and always on close)."""
PRINTER_ID = "printer"
READER_ID = "reader"
READER_PROTOCOLS = ("magtek", "framed")


def serial_params(settings: SerialSettings) -> SerialParams:
    """The ``[printer]`` / ``[reader]`` serial keys as pyserial line settings."""
    return SerialParams(
        baudrate=settings.baudrate,
        bytesize=settings.bytesize,
        parity=settings.parity,
        stopbits=settings.stopbits,
        flow_control=settings.flow_control,
        timeout_s=parse_duration(settings.timeout),
        write_timeout_s=parse_duration(settings.write_timeout),
    )


def lrc_rule(reader: ReaderConfig) -> LrcRule:
    """The framed LRC rule from ``reader.lrc_include_stx/etx`` and ``reader.lrc_seed``."""
    return LrcRule(
        include_stx=reader.lrc_include_stx,
        include_etx=reader.lrc_include_etx,
        seed=reader.lrc_seed,
    )


def device_url(configured: str | None, given: str | None, *, key: str, option: str) -> str:
    """The URL given on the command line, else the configured one, else ConfigError."""
    url = (given if given is not None else configured) or ""
    if not url.strip():
        raise ConfigError(
            f"no {key.split('.')[0]} URL: set {key} in the configuration "
            f"(or POSEDGE_{key.replace('.', '__').upper()}) or pass {option} URL, "
            "e.g. /dev/ttyUSB0, socket://host:port, usb://04b8:0202 or sim://"
            f"{key.split('.')[0]}"
        )
    return url.strip()


def _transport(url: str, params: SerialParams, *, reconnect: bool) -> Transport:
    if not reconnect:
        return open_transport(url, serial=params)
    return ReconnectingTransport(lambda: open_transport(url, serial=params), url)


def open_printer(
    config: Config, state_dir: Path, url: str | None = None, *, reconnect: bool = False
) -> ReceiptPrinter:
    """The receipt printer at ``url`` (default ``printer.url``), configured from ``[printer]``.

    With ``reconnect`` the transport reopens the device after an unplug (the
    daemon); without it (technician commands) opening errors are raised at once.
    """
    section = config.printer
    target = device_url(section.url, url, key="printer.url", option="--printer")
    transport = _transport(target, serial_params(section), reconnect=reconnect)
    return ReceiptPrinter(
        transport,
        device_id=PRINTER_ID,
        statistics=DeviceStatistics(
            state_dir, PRINTER_ID, min_save_interval_s=STATS_SAVE_INTERVAL_S
        ),
        code_page=CodePage[section.code_page],
        columns=section.columns,
        poll_timeout_s=parse_duration(section.poll_timeout),
        job_timeout_s=parse_duration(section.job_timeout),
    )


def open_reader(
    config: Config,
    state_dir: Path,
    url: str | None = None,
    protocol: str | None = None,
    *,
    reconnect: bool = False,
) -> CardReader:
    """The card reader at ``url`` (default ``reader.url``), configured from ``[reader]``.

    ``protocol`` overrides ``reader.protocol``. PAN tokens are keyed by the
    process-wide in-memory key (rotated daily; nothing in ``state_dir``), so
    a reopened reader gives the same card the same token within the day.
    """
    section = config.reader
    target = device_url(section.url, url, key="reader.url", option="--reader")
    chosen = protocol or section.protocol
    if chosen not in READER_PROTOCOLS:
        raise ConfigError(
            f"reader protocol {chosen!r} is not supported; allowed: {', '.join(READER_PROTOCOLS)}"
        )
    transport = _transport(target, serial_params(section), reconnect=reconnect)
    return CardReader(
        transport,
        token_key=pan_token_key(),
        protocol="framed" if chosen == "framed" else "magtek",
        device_id=READER_ID,
        statistics=DeviceStatistics(
            state_dir, READER_ID, min_save_interval_s=STATS_SAVE_INTERVAL_S
        ),
        lrc_rule=lrc_rule(section),
        track_lrc=section.track_lrc,
        inter_byte_timeout_s=parse_duration(section.inter_byte_timeout),
        ack_timeout_s=parse_duration(section.ack_timeout),
        response_timeout_s=parse_duration(section.response_timeout),
    )


def swipe_timeout_s(config: Config) -> float:
    """``reader.swipe_timeout`` in seconds."""
    return parse_duration(config.reader.swipe_timeout)
