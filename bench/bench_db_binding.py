"""How Postgres parameters are bound: the client's and the server's CPU per engine-shaped statement.

Django's default for psycopg 3 quotes every parameter into the SQL text on the client (``ClientCursor``) and the
server parses and plans each statement again. With ``DB_PREPARED_STATEMENTS`` (on by default, settings.py) the
parameters go separately (``server_side_binding``) and a statement a connection has run ``DB_PREPARE_THRESHOLD``
times is prepared on the server, which then only binds and executes it. This bench runs the same statements
both ways on one connection each, against temporary tables shaped like the engine's (a fill sync's answer
UPDATE, the open-rows read, a fill's INSERT), and reads the client's CPU (``time.process_time``) and the
server backend's (``/proc/<pid>/stat``; the server must be on this machine).

    python -m bench.bench_db_binding [--statements 5000]

Postgres only (``DATABASE_URL``); without it the bench says so and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402

SETUP = (
    "CREATE TEMP TABLE o (id bigserial PRIMARY KEY, bot_id bigint, position_id bigint, status varchar(20), "
    "price numeric(30,12), amount numeric(30,12), filled numeric(30,12), exchange_order_id varchar(64), "
    "acknowledged_at timestamptz, updated_at timestamptz)",
    "CREATE INDEX ON o (bot_id, status)",
    "INSERT INTO o (bot_id, position_id, status, price, amount, filled, updated_at) "
    "SELECT g % 200, g % 200, CASE WHEN g % 10 = 0 THEN 'open' ELSE 'canceled' END, 100.01, 0.5, 0, now() "
    "FROM generate_series(1, 20000) g",
    "CREATE TEMP TABLE f (id bigserial PRIMARY KEY, order_id bigint, exchange_trade_id varchar(64), "
    "price numeric(30,12), amount numeric(30,12), fee numeric(30,12), executed_at timestamptz)",
    "ANALYZE o",
)

STATEMENTS = (
    ("answer UPDATE", "UPDATE o SET status = %s, filled = %s, exchange_order_id = %s, acknowledged_at = now(), "
                      "updated_at = now() WHERE id = %s",
     lambda i: ["filled", Decimal("0.5"), f"E-{i}", i % 20000 + 1]),
    ("open rows SELECT", "SELECT id, status, price, amount, filled FROM o WHERE bot_id = %s "
                         "AND status IN (%s, %s, %s) AND position_id = %s ORDER BY id",
     lambda i: [i % 200, "open", "partially_filled", "pending", i % 200]),
    ("fill INSERT", "INSERT INTO f (order_id, exchange_trade_id, price, amount, fee, executed_at) "
                    "VALUES (%s, %s, %s, %s, %s, now()) RETURNING id",
     lambda i: [i % 20000 + 1, f"T-{i}", Decimal("100.01"), Decimal("0.25"), Decimal("0.0025")]),
)


def backend_cpu_secs(conn: Any) -> float:
    fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, server_side: bool, statements: int) -> dict[str, Any]:
    import psycopg

    conn = psycopg.connect(url, autocommit=True, prepare_threshold=5 if server_side else None,
                           cursor_factory=psycopg.Cursor if server_side else psycopg.ClientCursor)
    try:
        cursor = conn.cursor()
        for sql in SETUP:
            cursor.execute(sql)
        figures: dict[str, Any] = {}
        for name, sql, params in STATEMENTS:
            for i in range(20):  # warm: past the prepare threshold, caches filled
                cursor.execute(sql, params(i))
            client, server, wall = time.process_time(), backend_cpu_secs(conn), time.perf_counter()
            for i in range(statements):
                cursor.execute(sql, params(i))
                if cursor.description is not None:
                    cursor.fetchall()
            n = statements
            figures[name] = {"client_us": round(1e6 * (time.process_time() - client) / n, 1),
                             "server_us": round(1e6 * (backend_cpu_secs(conn) - server) / n, 1),
                             "wall_us": round(1e6 * (time.perf_counter() - wall) / n, 1)}
        figures["mean"] = {key: round(sum(f[key] for f in figures.values()) / len(STATEMENTS), 1)
                           for key in ("client_us", "server_us", "wall_us")}
        return figures
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=5000, help="executions per statement and mode")
    options = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_db_binding: Postgres only (DATABASE_URL=postgres://...); nothing measured")
        return
    url = url.replace("postgres://", "postgresql://", 1)
    result: dict[str, Any] = {"statements": options.statements}
    for label, server_side in (("client_side", False), ("server_side_prepared", True)):
        result[label] = measure(url, server_side, options.statements)
        for name, figures in result[label].items():
            print(f"{label:22s} {name:18s} client {figures['client_us']:6.1f} µs  server {figures['server_us']:6.1f} µs"
                  f"  wall {figures['wall_us']:6.1f} µs")
    print(f"wrote {write_result('db_binding', result)}")


if __name__ == "__main__":
    main()
