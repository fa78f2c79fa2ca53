"""Real signals (os.kill on ourselves) into handlers installed on a fresh event loop."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import pytest

from posedge.agent.daemon import SignalHandlers, install_signal_handlers

from .support import captured_logs

WAIT_S = 5.0


def kill(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)


async def barrier(dumped: asyncio.Event) -> None:
    """SIGUSR1 → dump → event: every signal sent before it has been handled."""
    dumped.clear()
    kill(signal.SIGUSR1)
    await asyncio.wait_for(dumped.wait(), WAIT_S)


def run_with_handlers(
    body: Callable[[SignalHandlers, dict[str, int], asyncio.Event], Awaitable[None]],
    reload: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, int]:
    calls = {"stop": 0, "force_stop": 0}

    async def scenario() -> None:
        dumped = asyncio.Event()

        def stop() -> None:
            calls["stop"] += 1

        def force_stop() -> None:
            calls["force_stop"] += 1

        handlers = install_signal_handlers(
            stop=stop, force_stop=force_stop, reload=reload, dump=dumped.set
        )
        try:
            await body(handlers, calls, dumped)
        finally:
            handlers.remove()

    asyncio.run(scenario())
    return calls


def test_first_sigterm_stops_second_forces_further_ones_are_ignored() -> None:
    async def body(h: SignalHandlers, calls: dict[str, int], dumped: asyncio.Event) -> None:
        kill(signal.SIGTERM)
        await barrier(dumped)
        assert calls == {"stop": 1, "force_stop": 0} and h.stop_requested
        kill(signal.SIGTERM)
        await barrier(dumped)
        assert calls == {"stop": 1, "force_stop": 1}
        kill(signal.SIGINT)
        await barrier(dumped)
        assert calls == {"stop": 1, "force_stop": 1} and h.stop_signals == 3

    run_with_handlers(body)


def test_sigint_stops_too() -> None:
    async def body(h: SignalHandlers, calls: dict[str, int], dumped: asyncio.Event) -> None:
        kill(signal.SIGINT)
        await barrier(dumped)
        assert calls["stop"] == 1

    run_with_handlers(body)


def test_sighup_during_a_reload_is_coalesced_into_one_more() -> None:
    started = 0
    gate: asyncio.Event | None = None
    first_started: asyncio.Event | None = None

    async def reload() -> None:
        nonlocal started
        assert gate is not None and first_started is not None
        started += 1
        first_started.set()
        await gate.wait()

    async def body(h: SignalHandlers, calls: dict[str, int], dumped: asyncio.Event) -> None:
        nonlocal gate, first_started
        gate, first_started = asyncio.Event(), asyncio.Event()
        kill(signal.SIGHUP)
        await asyncio.wait_for(first_started.wait(), WAIT_S)
        for _ in range(3):
            kill(signal.SIGHUP)
        await barrier(dumped)
        assert started == 1  # serialised: nothing runs alongside the first reload
        gate.set()
        assert h.reload_task is not None
        await asyncio.wait_for(h.reload_task, WAIT_S)
        assert started == 2 and h.reloads_done == 2  # three SIGHUPs → one more reload

    run_with_handlers(body, reload=reload)


def test_a_failing_reload_is_logged_and_the_next_one_still_runs() -> None:
    outcomes = [RuntimeError("bad config"), None]

    async def reload() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    async def body(h: SignalHandlers, calls: dict[str, int], dumped: asyncio.Event) -> None:
        for _ in range(2):
            kill(signal.SIGHUP)
            await barrier(dumped)
            assert h.reload_task is not None
            await asyncio.wait_for(h.reload_task, WAIT_S)
        assert h.reloads_done == 2 and outcomes == []

    with captured_logs() as records:
        run_with_handlers(body, reload=reload)
    assert any("reload failed" in r.getMessage() and r.exc_info for r in records)


def test_no_reload_once_stopping() -> None:
    reloads = 0

    async def reload() -> None:
        nonlocal reloads
        reloads += 1

    async def body(h: SignalHandlers, calls: dict[str, int], dumped: asyncio.Event) -> None:
        kill(signal.SIGTERM)
        kill(signal.SIGHUP)
        await barrier(dumped)
        assert h.reload_task is None and reloads == 0

    run_with_handlers(body, reload=reload)


def test_a_raising_stop_callback_is_logged_not_propagated() -> None:
    async def scenario() -> None:
        dumped = asyncio.Event()

        def stop() -> None:
            raise RuntimeError("boom")

        handlers = install_signal_handlers(stop=stop, dump=dumped.set)
        try:
            kill(signal.SIGTERM)
            await barrier(dumped)
        finally:
            handlers.remove()

    with captured_logs() as records:
        asyncio.run(scenario())
    assert any(r.getMessage() == "stop callback failed" for r in records)


def test_remove_restores_default_dispositions() -> None:
    async def no_reload() -> None:
        pass

    async def scenario() -> None:
        handlers = install_signal_handlers(stop=lambda: None, reload=no_reload, dump=print)
        assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, None)
        handlers.remove()

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)}
    asyncio.run(scenario())
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert all(v == signal.SIG_DFL for v in before.values())


def test_sighup_and_sigusr1_are_left_alone_without_callbacks() -> None:
    async def scenario() -> None:
        handlers = install_signal_handlers(stop=lambda: None)
        try:
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
        finally:
            handlers.remove()

    asyncio.run(scenario())


def test_installing_outside_the_main_thread_fails_loudly() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def install() -> None:
            install_signal_handlers(stop=lambda: None, loop=loop)

        with pytest.raises((RuntimeError, ValueError)):
            await asyncio.to_thread(install)

    asyncio.run(scenario())
