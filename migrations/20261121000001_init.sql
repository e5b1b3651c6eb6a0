-- market-encoder initial schema: prices, the securities they belong to, and one row per run.

-- Daily bars. One row per (symbol, trade_date); reruns upsert on that key.
-- Prices: NUMERIC(20, 8) holds crypto above $100,000 with room to spare (12 integer digits) and
-- FX quotes to 8 decimals. Yahoo sends binary floats; market-encoder rounds them to the
-- instrument's precision before they get here, so the stored value is the quoted one.
CREATE TABLE market_data (
    id            UUID        PRIMARY KEY DEFAULT gen_random_uuid(),
    symbol        VARCHAR(32) NOT NULL,
    trade_date    DATE        NOT NULL,
    open_price    NUMERIC(20, 8) NOT NULL CHECK (open_price > 0),
    high_price    NUMERIC(20, 8) NOT NULL CHECK (high_price > 0),
    low_price     NUMERIC(20, 8) NOT NULL CHECK (low_price > 0),
    close_price   NUMERIC(20, 8) NOT NULL CHECK (close_price > 0),
    adj_close     NUMERIC(20, 8)          CHECK (adj_close > 0),
    volume        BIGINT      NOT NULL DEFAULT 0 CHECK (volume >= 0),
    -- (close / previous close) - 1; NULL for the first bar ever stored for the symbol.
    daily_return  NUMERIC(20, 12),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT market_data_symbol_trade_date_key UNIQUE (symbol, trade_date),
    CONSTRAINT market_data_bar_consistent CHECK (
        low_price <= high_price
        AND close_price BETWEEN low_price AND high_price
        AND open_price BETWEEN low_price AND high_price
    )
);

-- What we track, as configured, plus what Yahoo's meta says about it.
CREATE TABLE securities (
    db_symbol      VARCHAR(32)  PRIMARY KEY,
    yahoo_symbol   VARCHAR(32)  NOT NULL,
    name           TEXT         NOT NULL,
    category       VARCHAR(32)  NOT NULL,
    currency       VARCHAR(16),
    exchange_tz    TEXT,
    instrument_type VARCHAR(32),
    exchange_name  TEXT,
    first_seen_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- One row per run, for monitoring: started as 'running', finished with its outcome.
CREATE TABLE runs (
    id                 UUID        PRIMARY KEY DEFAULT gen_random_uuid(),
    started_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at        TIMESTAMPTZ,
    outcome            VARCHAR(16) NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'succeeded', 'partial', 'failed', 'interrupted')),
    window_from        DATE        NOT NULL,
    window_to          DATE        NOT NULL,
    securities_total   INTEGER     NOT NULL DEFAULT 0,
    securities_ok      INTEGER     NOT NULL DEFAULT 0,
    securities_failed  INTEGER     NOT NULL DEFAULT 0,
    rows_written       BIGINT      NOT NULL DEFAULT 0,
    -- [{"db_symbol": "SPX", "outcome": "succeeded", "rows_fetched": 60, "rows_written": 60,
    --   "first_date": "...", "last_date": "...", "error": null}, ...]
    details            JSONB       NOT NULL DEFAULT '[]'::jsonb,
    -- {"SPX": "message", ...}: only the failures, for a quick look.
    errors             JSONB       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX runs_started_at_idx ON runs (started_at DESC);
