"""The fleet overview's data: every terminal's state, derived in SQL, one page of stores at a
time (docs/dashboard.md, "States").

A page costs two set-based queries whatever the fleet's size: the state counts of the whole
fleet (the legend), and the page's rows (stores ranked in SQL, filtered by state and
search, the page cut out with the ranks). No query per terminal.

A terminal's state, the first that holds:

- ``offline``: no heartbeat for ``HEARTBEAT_GRACE`` of its intervals (or none ever);
- ``silent``: its ``lane_not_selling`` alert is open (pending, firing or flapping);
- ``backlog``: its ``sales_not_arriving`` alert is open (backlog growing, sales not arriving);
- ``alerting``: another alert of the terminal is firing (anomalies);
- ``selling``: a sale within ``SELLING_WINDOW_S``;
- ``quiet``: alive, no alert, no recent sale — quiet as the silence model expects.

The store of a terminal is the registry's, else its id's part before the last ``-``
(``STORE-LANE``), the rule of :func:`posedge.backoffice.anomalies.store_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..silence import SilenceConfig
from ..store import BackofficeStore

STATES: tuple[str, ...] = ("offline", "silent", "backlog", "alerting", "selling", "quiet")
STATE_LABELS = {
    "selling": "selling",
    "quiet": "quiet as expected",
    "silent": "silent",
    "offline": "offline",
    "alerting": "alerting",
    "backlog": "backlog growing",
}
SELLING_WINDOW_S = 3600.0
HEARTBEAT_GRACE = SilenceConfig().heartbeat_grace
DEFAULT_INTERVAL_S = SilenceConfig().default_interval_s
STORES_PER_PAGE = 25
MAX_SEARCH_CHARS = 100

# The fleet with each terminal's store, lane and state (parameters: now, now - selling window).
FLEET_CTE = f"""WITH ids AS (
    SELECT terminal FROM terminals
    UNION ALL SELECT r.terminal FROM terminal_registry r WHERE r.status = 'active'
        AND NOT EXISTS (SELECT 1 FROM terminals t WHERE t.terminal = r.terminal)
), named AS (
    SELECT terminal, rtrim(terminal, replace(terminal, '-', '')) AS head FROM ids
), open_alerts AS (
    SELECT terminal,
        max(CASE WHEN alertname = 'lane_not_selling' THEN 1 ELSE 0 END) AS silent,
        max(CASE WHEN alertname = 'sales_not_arriving' THEN 1 ELSE 0 END) AS backlog,
        max(CASE WHEN alertname NOT IN ('lane_not_selling', 'sales_not_arriving',
            'terminal_not_alive') AND state IN ('firing', 'flapping') THEN 1 ELSE 0 END) AS other,
        count(*) AS open_count
    FROM alerts
    WHERE state IN ('pending', 'firing', 'flapping') AND terminal IS NOT NULL
    GROUP BY terminal
), fleet AS (
    SELECT n.terminal,
        coalesce(r.store, CASE WHEN length(n.head) > 1
            THEN substr(n.head, 1, length(n.head) - 1) ELSE n.terminal END) AS store,
        coalesce(r.lane, CASE WHEN length(n.head) > 1
            THEN substr(n.terminal, length(n.head) + 1) ELSE '' END) AS lane,
        CASE
            WHEN t.last_heartbeat_at IS NULL
                OR ? - t.last_heartbeat_at > {HEARTBEAT_GRACE!r}
                    * coalesce(t.interval_s, {DEFAULT_INTERVAL_S!r}) THEN 'offline'
            WHEN coalesce(a.silent, 0) = 1 THEN 'silent'
            WHEN coalesce(a.backlog, 0) = 1 THEN 'backlog'
            WHEN coalesce(a.other, 0) = 1 THEN 'alerting'
            WHEN s.last_sale_at IS NOT NULL AND s.last_sale_at >= ? THEN 'selling'
            ELSE 'quiet'
        END AS state,
        t.last_heartbeat_at, t.reported_backlog, s.last_sale_at,
        coalesce(a.open_count, 0) AS open_alerts
    FROM named n
    LEFT JOIN terminals t ON t.terminal = n.terminal
    LEFT JOIN terminal_registry r ON r.terminal = n.terminal
    LEFT JOIN silence_lanes s ON s.terminal = n.terminal
    LEFT JOIN open_alerts a ON a.terminal = n.terminal
)"""

_COUNTS_SQL = FLEET_CTE + " SELECT state, count(*) FROM fleet GROUP BY state"

_PAGE_SQL = (
    FLEET_CTE
    + """, matched AS (
    SELECT * FROM fleet
    WHERE (? = '' OR state = ?)
        AND (? = '' OR lower(store) LIKE ? ESCAPE '\\' OR lower(terminal) LIKE ? ESCAPE '\\')
), ranked AS (
    SELECT matched.*, dense_rank() OVER (ORDER BY store) AS store_no FROM matched
)
SELECT terminal, store, lane, state, last_heartbeat_at, reported_backlog, last_sale_at,
    open_alerts, (SELECT count(*) FROM matched) AS terminals_matched,
    (SELECT count(DISTINCT store) FROM matched) AS stores_matched
FROM ranked WHERE store_no > ? AND store_no <= ?
ORDER BY store, lane, terminal"""
)

_ONE_SQL = FLEET_CTE + " SELECT terminal, store, lane, state FROM fleet WHERE terminal = ?"
_STORE_SQL = FLEET_CTE + " SELECT terminal FROM fleet WHERE store = ? ORDER BY terminal"


class FilterError(ValueError):
    """A filter or page parameter that is not allowed; the message says what is."""


@dataclass(frozen=True)
class Lane:
    terminal: str
    store: str
    lane: str
    state: str
    last_heartbeat_at: float | None
    reported_backlog: int | None
    last_sale_at: float | None
    open_alerts: int


@dataclass(frozen=True)
class OverviewPage:
    counts: dict[str, int]
    stores: list[tuple[str, list[Lane]]]
    page: int
    pages: int
    terminals_matched: int
    stores_matched: int


def like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def check_filters(state: str, search: str, page: int) -> None:
    if state and state not in STATES:
        raise FilterError(f"state {state[:40]!r} is not one of {', '.join(STATES)}")
    if len(search) > MAX_SEARCH_CHARS:
        raise FilterError(f"the search text is over {MAX_SEARCH_CHARS} characters")
    if "\x00" in search:
        raise FilterError("the search text contains a NUL character")
    if page < 1:
        raise FilterError(f"page {page} does not exist; pages start at 1")


def overview(
    store: BackofficeStore, now: float, state: str = "", search: str = "", page: int = 1,
    per_page: int = STORES_PER_PAGE,
) -> OverviewPage:  # fmt: skip
    """One page of the overview: ``per_page`` stores matching the filters, their lanes."""
    check_filters(state, search, page)
    recent = now - SELLING_WINDOW_S
    counts = {name: 0 for name in STATES}
    for name, count in store.db.execute(_COUNTS_SQL, (now, recent)).rows:
        counts[str(name)] = int(count)
    pattern = like_pattern(search.strip())
    query = search.strip()
    first = (page - 1) * per_page
    rows = store.db.execute(
        _PAGE_SQL,
        (now, recent, state, state, query, pattern, pattern, first, first + per_page),
    ).rows
    grouped: dict[str, list[Lane]] = {}
    terminals_matched = stores_matched = 0
    for row in rows:
        lane = Lane(
            str(row[0]), str(row[1]), str(row[2]), str(row[3]), _float(row[4]),
            None if row[5] is None else int(row[5]), _float(row[6]), int(row[7]),
        )  # fmt: skip
        grouped.setdefault(lane.store, []).append(lane)
        terminals_matched, stores_matched = int(row[8]), int(row[9])
    if not rows and page > 1:
        # Past the last page: say how many there are (one more cheap query).
        total = store.db.execute(
            _PAGE_SQL, (now, recent, state, state, query, pattern, pattern, 0, per_page)
        ).rows
        stores_matched = int(total[0][9]) if total else 0
        pages = max(1, -(-stores_matched // per_page))
        raise FilterError(f"page {page} does not exist; there are {pages} pages")
    pages = max(1, -(-stores_matched // per_page))
    return OverviewPage(
        counts, list(grouped.items()), page, pages, terminals_matched, stores_matched
    )


def lane_of(store: BackofficeStore, terminal: str, now: float) -> Lane | None:
    row = store.db.execute(_ONE_SQL, (now, now - SELLING_WINDOW_S, terminal)).fetchone()
    if row is None:
        return None
    return Lane(str(row[0]), str(row[1]), str(row[2]), str(row[3]), None, None, None, 0)


def store_terminals(store: BackofficeStore, store_id: str, now: float) -> list[str]:
    rows = store.db.execute(_STORE_SQL, (now, now - SELLING_WINDOW_S, store_id)).rows
    return [str(r[0]) for r in rows]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
