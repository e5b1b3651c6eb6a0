-- Which market-data source answered each stored bar (issue 13): 'yahoo' (every bar stored before
-- this migration) or 'tiingo'. Whatever the source, close_price and adj_close are on one basis
-- (Yahoo's: split-adjusted close, split- and dividend-adjusted adj_close; ARCHITECTURE.md).
ALTER TABLE market_data
    ADD COLUMN source TEXT NOT NULL DEFAULT 'yahoo'
        CHECK (source IN ('yahoo', 'tiingo'));
