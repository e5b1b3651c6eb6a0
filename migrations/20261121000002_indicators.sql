-- Technical indicators and the market regime per security and trade date (the analyze stage).
-- Statistics, so DOUBLE PRECISION; NULL where a value needs more history than is stored.
-- Formulas: src/analyze.rs and ARCHITECTURE.md.
CREATE TABLE indicators (
    symbol             VARCHAR(32) NOT NULL,
    trade_date         DATE        NOT NULL,
    sma_20             DOUBLE PRECISION,
    sma_50             DOUBLE PRECISION,
    sma_200            DOUBLE PRECISION,
    ema_12             DOUBLE PRECISION,
    ema_26             DOUBLE PRECISION,
    macd               DOUBLE PRECISION,
    macd_signal        DOUBLE PRECISION,
    macd_hist          DOUBLE PRECISION,
    rsi_14             DOUBLE PRECISION,
    bb_upper           DOUBLE PRECISION,
    bb_middle          DOUBLE PRECISION,
    bb_lower           DOUBLE PRECISION,
    bb_percent_b       DOUBLE PRECISION,
    atr_14             DOUBLE PRECISION,
    volatility_20d     DOUBLE PRECISION,   -- annualized, as a fraction (0.118 = 11.8%)
    drawdown_252d      DOUBLE PRECISION,   -- <= 0, as a fraction
    volume_zscore_20d  DOUBLE PRECISION,
    return_5d          DOUBLE PRECISION,
    new_52w_high       BOOLEAN     NOT NULL DEFAULT false,
    trend              VARCHAR(16) CHECK (trend IN ('bull', 'bear', 'sideways')),
    volatility_regime  VARCHAR(16) CHECK (volatility_regime IN ('calm', 'volatile')),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, trade_date),
    FOREIGN KEY (symbol, trade_date) REFERENCES market_data (symbol, trade_date) ON DELETE CASCADE
);
