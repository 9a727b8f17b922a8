-- Foundation schema. Decimal values are TEXT (canonical decimal strings); times are INTEGER ns (UTC).

CREATE TABLE journal (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns       INTEGER NOT NULL,
    type        TEXT NOT NULL,
    aggregate   TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX journal_aggregate ON journal(aggregate, aggregate_id);
CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;
CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;

CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    venue           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    type            TEXT NOT NULL CHECK (type IN ('market', 'limit')),
    qty             TEXT NOT NULL,
    limit_price     TEXT,
    status          TEXT NOT NULL,
    filled_qty      TEXT NOT NULL,
    avg_fill_price  TEXT NOT NULL,
    fees            TEXT NOT NULL,
    fee_asset       TEXT NOT NULL,
    strategy_id     TEXT NOT NULL,
    venue_order_id  TEXT NOT NULL,
    reject_rule     TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_ns      INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL,
    seq             INTEGER NOT NULL UNIQUE   -- insertion order, for stable paging
);
CREATE INDEX orders_status ON orders(status);
CREATE INDEX orders_strategy ON orders(strategy_id);

CREATE TABLE fills (
    fill_id         TEXT PRIMARY KEY,
    client_order_id TEXT NOT NULL REFERENCES orders(client_order_id),
    venue           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    qty             TEXT NOT NULL,
    price           TEXT NOT NULL,
    fee             TEXT NOT NULL,
    fee_asset       TEXT NOT NULL,
    liquidity       TEXT NOT NULL,
    ts_ns           INTEGER NOT NULL,
    seq             INTEGER NOT NULL UNIQUE
);
CREATE INDEX fills_order ON fills(client_order_id);

CREATE TABLE balances (
    asset   TEXT PRIMARY KEY,
    total   TEXT NOT NULL
);

CREATE TABLE starting_balances (
    asset   TEXT PRIMARY KEY,
    total   TEXT NOT NULL
);

CREATE TABLE positions (
    venue        TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    quote        TEXT NOT NULL,
    qty          TEXT NOT NULL,
    avg_price    TEXT NOT NULL,
    realized_pnl TEXT NOT NULL,
    fees         TEXT NOT NULL,
    PRIMARY KEY (venue, symbol)
);

CREATE TABLE strategies (
    strategy_id  TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    params       TEXT NOT NULL,   -- JSON object
    instruments  TEXT NOT NULL,   -- JSON list of "SYMBOL@VENUE"
    status       TEXT NOT NULL,
    state        TEXT NOT NULL,   -- JSON object the strategy persists (e.g. stop levels)
    last_error   TEXT NOT NULL DEFAULT '',
    created_ns   INTEGER NOT NULL,
    updated_ns   INTEGER NOT NULL
);

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_ns     INTEGER NOT NULL
);

CREATE TABLE sessions (
    session_id    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(user_id),
    refresh_hash  TEXT NOT NULL UNIQUE,
    created_ns    INTEGER NOT NULL,
    expires_ns    INTEGER NOT NULL,
    revoked       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE signing_keys (
    key_id          TEXT PRIMARY KEY,
    private_key_pem TEXT NOT NULL,
    created_ns      INTEGER NOT NULL
);

CREATE TABLE risk_limits (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE risk_state (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE replay_cursor (
    feed          TEXT PRIMARY KEY,
    last_ts_ns    INTEGER NOT NULL,   -- close time of the last bar fully handled
    bars_handled  INTEGER NOT NULL
);

CREATE TABLE paper_orders (
    client_order_id TEXT PRIMARY KEY,
    venue_order_id  TEXT NOT NULL UNIQUE,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    type            TEXT NOT NULL,
    qty             TEXT NOT NULL,
    limit_price     TEXT,
    filled_qty      TEXT NOT NULL,
    status          TEXT NOT NULL,
    accepted_ns     INTEGER NOT NULL
);

CREATE TABLE meta (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
