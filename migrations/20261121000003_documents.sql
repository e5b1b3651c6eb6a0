-- The narrate stage's documents (the last `embedding_days` of each security) and the state of
-- their indexing into ChromaDB: a document is pending while indexed_hash differs from
-- content_hash (never indexed, or changed since), so a run embeds only what is new or changed
-- and a run after a Chroma outage catches up on everything missing.
CREATE TABLE documents (
    symbol        VARCHAR(32) NOT NULL,
    trade_date    DATE        NOT NULL,
    document      TEXT        NOT NULL,
    -- What Chroma stores beside the vector: a flat object of scalars (string, integer, float, bool).
    metadata      JSONB       NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    content_hash  TEXT        GENERATED ALWAYS AS (md5(document || metadata::text)) STORED,
    indexed_hash  TEXT,
    indexed_at    TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, trade_date),
    FOREIGN KEY (symbol, trade_date) REFERENCES market_data (symbol, trade_date) ON DELETE CASCADE
);
CREATE INDEX documents_pending_idx ON documents (symbol, trade_date)
    WHERE indexed_hash IS DISTINCT FROM content_hash;
