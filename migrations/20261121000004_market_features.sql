-- Cross-asset features (ML inputs), one row per trade date of the feature calendar and feature,
-- computed by each run from stored closes. value is NULL where the inputs are missing, with
-- the reason in inputs; never a made-up number. Formulas, windows and the date rule:
-- src/features.rs and ARCHITECTURE.md ("Cross-asset features").
CREATE TABLE market_features (
    trade_date  DATE        NOT NULL,
    feature     VARCHAR(63) NOT NULL CHECK (feature ~ '^ml_[a-z0-9_]+$'),
    value       DOUBLE PRECISION
        CHECK (value IS NULL OR value NOT IN ('NaN', 'Infinity', '-Infinity')),
    -- What the value was computed from, or why it is NULL, e.g.
    -- {"kind": "closes", "closes": [{"symbol": "QQQ", "close": 450.12}, ...]},
    -- {"kind": "returns", "symbols": ["GLD", "TLT"], "from": "...", "to": "...", "returns": 30},
    -- {"kind": "missing", "missing": ["VIX"]}, {"kind": "short_history", ...}.
    inputs      JSONB       NOT NULL CHECK (jsonb_typeof(inputs) = 'object'),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (trade_date, feature)
);

-- Feature rows each run wrote (inserted, changed or removed).
ALTER TABLE runs ADD COLUMN features_written BIGINT NOT NULL DEFAULT 0;

-- One row per date with the seed's column names. Correlations beyond the default six
-- (features.correlations) are in ml_features, which holds every feature of the date.
CREATE VIEW ml_market_features AS
SELECT
    trade_date,
    max(value) FILTER (WHERE feature = 'ml_risk_on_ratio')          AS ml_risk_on_ratio,
    max(value) FILTER (WHERE feature = 'ml_innovation_premium')     AS ml_innovation_premium,
    max(value) FILTER (WHERE feature = 'ml_tech_leadership')        AS ml_tech_leadership,
    max(value) FILTER (WHERE feature = 'ml_credit_spreads')         AS ml_credit_spreads,
    max(value) FILTER (WHERE feature = 'ml_flight_to_quality')      AS ml_flight_to_quality,
    max(value) FILTER (WHERE feature = 'ml_vix_fear_index')         AS ml_vix_fear_index,
    max(value) FILTER (WHERE feature = 'ml_dollar_strength')        AS ml_dollar_strength,
    max(value) FILTER (WHERE feature = 'ml_market_breadth')         AS ml_market_breadth,
    max(value) FILTER (WHERE feature = 'ml_nasdaq_correlation')     AS ml_nasdaq_correlation,
    max(value) FILTER (WHERE feature = 'ml_arkk_correlation')       AS ml_arkk_correlation,
    max(value) FILTER (WHERE feature = 'ml_gold_correlation')       AS ml_gold_correlation,
    max(value) FILTER (WHERE feature = 'ml_sp500_correlation')      AS ml_sp500_correlation,
    max(value) FILTER (WHERE feature = 'ml_treasuries_correlation') AS ml_treasuries_correlation,
    max(value) FILTER (WHERE feature = 'ml_dollar_correlation')     AS ml_dollar_correlation,
    jsonb_object_agg(feature, value)                                AS ml_features,
    count(value)::int                                               AS features_present,
    count(*)::int                                                   AS features_expected
FROM market_features
GROUP BY trade_date;
