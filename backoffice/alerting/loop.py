"""The evaluation loop of ``posedge backoffice serve``: a daemon thread that evaluates
every ``interval_s``, another that delivers due notifications about every second.

Failures are logged (structured, to stderr) and the loop goes on: a database that went
away for a moment costs a round, not the server. :meth:`AlertLoop.stop` waits for the
round in progress. Nothing in the loop's memory matters across restarts: states and
the outbox are in the database.
"""

from __future__ import annotations

import logging
import threading

from ..store import BackofficeStore
from .config import AlertConfig
from .engine import evaluate
from .outbox import deliver_due

log = logging.getLogger("posedge.backoffice.alerts")
DELIVERY_TICK_S = 1.0


class AlertLoop:
    def __init__(self, store: BackofficeStore, config: AlertConfig) -> None:
        self.store = store
        self.config = config
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.rounds = 0

    def start(self) -> AlertLoop:
        if self.config.interval_s <= 0:
            return self
        if self.store.db.dialect == "sqlite":
            # One process serves a SQLite file: a delivery claimed by its previous run died
            # with it, so it is due again now rather than when its lease runs out.
            now = self.store.clock()
            with self.store.transaction() as tx:
                tx.execute(
                    "UPDATE alert_outbox SET next_attempt_at = ? WHERE delivered_at IS NULL"
                    " AND next_attempt_at > ?",
                    (now, now),
                )
        # Two threads: a slow receiver (up to delivery_timeout_s) never delays evaluation.
        self._threads = [
            threading.Thread(target=self._evaluate, name="alerts-evaluate", daemon=True),
            threading.Thread(target=self._deliver, name="alerts-deliver", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _evaluate(self) -> None:
        while not self._stop.is_set():
            try:
                done = evaluate(self.store, config=self.config)
                self.rounds += 1
                if done.transitions or done.notifications:
                    log.info(
                        "alerts evaluated",
                        extra={"transitions": len(done.transitions),
                               "notifications": done.notifications,
                               "new_flags": done.new_flags},
                    )  # fmt: skip
            except Exception:
                log.exception("alert evaluation failed; next round in %ss",
                              self.config.interval_s)  # fmt: skip
            self._stop.wait(self.config.interval_s)

    def _deliver(self) -> None:
        tick = min(DELIVERY_TICK_S, self.config.interval_s)
        while not self._stop.is_set():
            try:
                deliver_due(self.store, self.config)
            except Exception:
                log.exception("alert delivery failed; retrying")
            self._stop.wait(tick)

    def reload(self, config: AlertConfig) -> None:
        """Run with ``config`` from the next round on."""
        self.config = config

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads = []
