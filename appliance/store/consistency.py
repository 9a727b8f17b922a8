"""Offline consistency check of a Lyra database (``lyrad verify``; run after any crash).

Checks, each naming what is wrong:

* SQLite's own ``integrity_check``;
* the journal's ``seq`` is contiguous from 1 (nothing lost, nothing reordered);
* every fill has exactly one ``OrderFilled`` journal event, and vice versa;
* every order's ``filled_qty`` equals the sum of its fills, and FILLED means fully filled;
* balances and positions equal what the starting balances and the fills alone give
  (:func:`appliance.model.position.recompute_from_fills`);
* the audit log's hash chain is intact (:meth:`appliance.security.audit.AuditLog.verify`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

from appliance.model.fill import Fill, Liquidity
from appliance.model.instrument import InstrumentId
from appliance.model.order import OrderSide
from appliance.model.position import recompute_from_fills
from appliance.store.db import Database


def check_consistency(db: Database) -> list[str]:
    """Return a list of problems (empty when the database is consistent)."""
    problems: list[str] = []
    latest = len(Database.migrations())
    if db.schema_version() != latest:
        return [f"schema version {db.schema_version()} but this lyrad expects {latest}: start lyrad once to migrate"]
    integrity = db.integrity_check()
    if integrity != "ok":
        problems.append(f"sqlite integrity_check: {integrity}")
    count, low, high = db.query_one("SELECT COUNT(*), MIN(seq), MAX(seq) FROM journal")
    if count and (low != 1 or high != count):
        problems.append(f"journal seq not contiguous: {count} rows, seq {low}..{high}")

    fills = [
        Fill(r[0], r[1], InstrumentId(r[2], r[3]), OrderSide(r[4]), Decimal(r[5]), Decimal(r[6]), Decimal(r[7]), r[8],
             Liquidity(r[9]), r[10])
        for r in db.query("SELECT fill_id, client_order_id, venue, symbol, side, qty, price, fee, fee_asset, liquidity, ts_ns "
                          "FROM fills ORDER BY seq")
    ]
    journaled = [json.loads(p)["fill_id"] for (p,) in db.query("SELECT payload FROM journal WHERE type='OrderFilled' ORDER BY seq")]
    if sorted(journaled) != sorted(f.fill_id for f in fills) or len(set(journaled)) != len(journaled):
        problems.append(f"fills table ({len(fills)}) and OrderFilled journal events ({len(journaled)}) disagree")

    filled: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        filled[f.client_order_id] += f.qty
    for cid, qty, filled_qty, status in db.query("SELECT client_order_id, qty, filled_qty, status FROM orders"):
        if Decimal(filled_qty) != filled.get(cid, Decimal(0)):
            problems.append(f"order {cid}: filled_qty {filled_qty} but its fills sum to {filled.get(cid, 0)}")
        if (status == "FILLED") != (Decimal(filled_qty) == Decimal(qty)):
            problems.append(f"order {cid}: status {status} with filled {filled_qty} of {qty}")

    starting = {(v, a): Decimal(t) for v, a, t in db.query("SELECT venue, asset, total FROM starting_balances")}
    assets: dict[InstrumentId, tuple[str, str]] = {}
    for f in fills:
        if f.instrument not in assets:
            base, quote = f.instrument.symbol.split("/")
            assets[f.instrument] = (base, quote.split(":")[0])
    balances, positions = recompute_from_fills(starting, fills, assets)
    stored = {(v, a): Decimal(t) for v, a, t in db.query("SELECT venue, asset, total FROM balances")}
    for key in sorted(set(balances) | set(stored)):
        if balances.get(key, Decimal(0)) != stored.get(key, Decimal(0)):
            problems.append(f"balance {key[1]}@{key[0]}: stored {stored.get(key, 0)} != recomputed {balances.get(key, 0)}")
    for venue, symbol, qty, avg, realized in db.query("SELECT venue, symbol, qty, avg_price, realized_pnl FROM positions"):
        pos = positions.get(InstrumentId(venue, symbol))
        expected = (pos.qty, pos.avg_price, pos.realized_pnl) if pos else (0, 0, 0)
        if (Decimal(qty), Decimal(avg), Decimal(realized)) != expected:
            problems.append(f"position {symbol}@{venue}: stored ({qty}, {avg}, {realized}) != recomputed {expected}")
    from appliance.engine.clock import LiveClock  # local: store code does not depend on security
    from appliance.security.audit import AuditLog

    chain = AuditLog(db, LiveClock()).verify()
    if not chain.ok:
        problems.append(f"audit log: record {chain.first_broken_seq}: {chain.reason}")
    return problems
