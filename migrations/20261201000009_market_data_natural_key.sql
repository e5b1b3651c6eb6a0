-- Bars are keyed by what they are, (symbol, trade_date), and indicator rows no longer carry a
-- per-row foreign key check. Both were most of PostgreSQL's work in a backfill (README,
-- Performance): inserting 521,800 bars cost 4.8 s with the surrogate `id` (a random UUID per row
-- and a second B-tree) against 3.1 s without; 521,800 indicator rows 7.0 s with the foreign key
-- (a FOR KEY SHARE lock per row, which dirties and WAL-logs every referenced bar's page) against
-- 2.2 s without (one server, same rows, back to back).
--
-- Invariant kept by the store instead of the foreign key: an indicator row exists only for a
-- stored bar. Indicators are written only for dates of the stored series they were computed
-- from (`Store::write_indicators` after `Store::series_to_analyze`), and the one statement that
-- deletes bars (a rebase's rewrite, `Store::store_series`) deletes their indicator rows in the
-- same transaction. Documents keep their foreign key and cascade (a few rows per run).
ALTER TABLE indicators DROP CONSTRAINT indicators_symbol_trade_date_fkey;
ALTER TABLE documents DROP CONSTRAINT documents_symbol_trade_date_fkey;
ALTER TABLE market_data DROP COLUMN id;
ALTER TABLE market_data DROP CONSTRAINT market_data_symbol_trade_date_key;
ALTER TABLE market_data ADD CONSTRAINT market_data_pkey PRIMARY KEY (symbol, trade_date);
ALTER TABLE documents ADD CONSTRAINT documents_symbol_trade_date_fkey
    FOREIGN KEY (symbol, trade_date) REFERENCES market_data (symbol, trade_date) ON DELETE CASCADE;
