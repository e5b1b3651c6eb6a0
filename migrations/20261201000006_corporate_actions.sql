-- Splits and dividends as Yahoo's chart `events` report them (issue 11). One row per security,
-- ex-date and kind; a run inserts what it has not seen (first_seen_at says when), and a split or
-- dividend not seen before, with older stored bars, makes the run rebase the security's history.
CREATE TABLE corporate_actions (
    symbol         VARCHAR(32)    NOT NULL,
    ex_date        DATE           NOT NULL,
    kind           VARCHAR(8)     NOT NULL CHECK (kind IN ('split', 'dividend')),
    -- split: numerator new shares for denominator old ones (10:1, 3:2)
    numerator      NUMERIC(20, 8) CHECK (numerator > 0),
    denominator    NUMERIC(20, 8) CHECK (denominator > 0),
    -- dividend: cash per share, in `currency`
    amount         NUMERIC(20, 8) CHECK (amount > 0),
    currency       VARCHAR(8),
    first_seen_at  TIMESTAMPTZ    NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ex_date, kind),
    CHECK ((kind = 'split' AND numerator IS NOT NULL AND denominator IS NOT NULL AND amount IS NULL)
        OR (kind = 'dividend' AND amount IS NOT NULL AND numerator IS NULL AND denominator IS NULL))
);
