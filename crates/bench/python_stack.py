"""The Python stack a user would pick instead of market-encoder, doing the same daily job: the
benchmark's phase E (crates/bench/src/pystack.rs) runs it side by side with the release binary.

    python python_stack.py CONFIG_YAML FROM TO DATABASE_URL YAHOO_URL [CHROMA_URL COLLECTION MODE]

What it does, as a user would write it with the usual libraries:
  1. yfinance `download` of every enabled security of CONFIG_YAML (market-encoder's file) for
     FROM..TO (inclusive), `threads` = the file's `encoding.batch_size`, as market-encoder
     fetches `batch_size` at a time;
  2. psycopg2: the bars upserted (`execute_values`, ON CONFLICT DO UPDATE) into its own tables
     (created if missing: prices NUMERIC, one primary key), one transaction per security;
  3. pandas: the same indicators as market-encoder's analyze stage (SMA 20/50/200, EMA 12/26,
     MACD, RSI 14, Bollinger 20/2, ATR 14, 20-day volatility, 252-day drawdown, volume z-score,
     5-day return, new 52-week high, trend and volatility regime) over the security's whole
     stored history, upserted for the days on or after the first one this run changed;
  4. a narrative per security and day for its last `encoding.embedding_days` stored days that
     have none yet (a sentence like market-encoder's, of about the same length), stored;
  5. with CHROMA_URL: the new narratives upserted into COLLECTION with chromadb's client,
     embedded by MODE:
       shipped  Chroma's default embedding function (all-MiniLM-L6-v2 on onnxruntime, as
                chromadb ships it: batches of 32 padded to 256 tokens);
       tuned    onnxruntime used well: one session (2 threads), longest first in batches of
                32, each padded to its longest text (ort_throughput.py's `embed`), vectors
                passed to `upsert`; the model from $ONNX_MODEL, its tokenizer from
                $EMBEDDING_MODEL_DIR.
Prints one JSON line: what it wrote, the seconds of each step, the mean narrative length.

Pointing it at the local fake Yahoo takes two changes to yfinance, both to things only the real
Yahoo needs: the chart URL's host (`_BASE_URL_`), and no cookie/crumb handshake with
fc.yahoo.com (the chart endpoint needs neither; ../shared/reference/). The shipped embedding
function finds its model where chromadb downloads it, `~/.cache/chroma/onnx_models/`: the
benchmark runs this with HOME pointing at a directory holding the same model exported to ONNX
(no hub here).
"""

import json
import math
import os
import sys
import time
from datetime import date, timedelta

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402
import yaml  # noqa: E402
import yfinance as yf  # noqa: E402
from yfinance import base as yf_base  # noqa: E402
from yfinance import data as yf_data  # noqa: E402
from yfinance.scrapers import history as yf_history  # noqa: E402

SCHEMA = """
CREATE TABLE IF NOT EXISTS py_prices (
    symbol TEXT NOT NULL, trade_date DATE NOT NULL,
    open NUMERIC(20, 8) NOT NULL, high NUMERIC(20, 8) NOT NULL, low NUMERIC(20, 8) NOT NULL,
    close NUMERIC(20, 8) NOT NULL, adj_close NUMERIC(20, 8), volume BIGINT NOT NULL,
    daily_return DOUBLE PRECISION, PRIMARY KEY (symbol, trade_date));
CREATE TABLE IF NOT EXISTS py_indicators (
    symbol TEXT NOT NULL, trade_date DATE NOT NULL,
    sma_20 FLOAT8, sma_50 FLOAT8, sma_200 FLOAT8, ema_12 FLOAT8, ema_26 FLOAT8, macd FLOAT8,
    macd_signal FLOAT8, macd_hist FLOAT8, rsi_14 FLOAT8, bb_upper FLOAT8, bb_middle FLOAT8,
    bb_lower FLOAT8, bb_percent_b FLOAT8, atr_14 FLOAT8, volatility_20d FLOAT8,
    drawdown_252d FLOAT8, volume_zscore_20d FLOAT8, return_5d FLOAT8, new_52w_high BOOLEAN,
    trend TEXT, volatility_regime TEXT, PRIMARY KEY (symbol, trade_date));
CREATE TABLE IF NOT EXISTS py_documents (
    symbol TEXT NOT NULL, trade_date DATE NOT NULL, document TEXT NOT NULL,
    metadata JSONB NOT NULL, PRIMARY KEY (symbol, trade_date));
"""

FLOATS = [
    "sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist",
    "rsi_14", "bb_upper", "bb_middle", "bb_lower", "bb_percent_b", "atr_14", "volatility_20d",
    "drawdown_252d", "volume_zscore_20d", "return_5d",
]
COLUMNS = FLOATS + ["new_52w_high", "trend", "volatility_regime"]


def securities(config):
    out = []
    for category, entries in (config.get("securities") or {}).items():
        for e in entries or []:
            if e.get("enabled", True) is False:
                continue
            symbol = str(e["symbol"])
            out.append({
                "yahoo": str(e.get("yahoo_symbol", symbol)),
                "db": str(e.get("db_symbol", symbol)),
                "name": str(e["name"]),
                "category": category,
            })
    return out


def point_yfinance_at(url):
    yf_history._BASE_URL_ = url
    yf_base._BASE_URL_ = url
    yf_data.YfData._get_cookie_and_crumb = lambda self, timeout=30: (None, "basic")


def fetch(secs, start, end, threads):
    frame = yf.download(
        [s["yahoo"] for s in secs], start=start.isoformat(),
        end=(end + timedelta(days=1)).isoformat(), interval="1d", auto_adjust=False,
        actions=True, group_by="ticker", threads=threads, progress=False,
    )
    bars = {}
    for s in secs:
        if s["yahoo"] not in frame.columns.get_level_values(0):
            continue
        df = frame[s["yahoo"]].dropna(subset=["Open", "High", "Low", "Close"])
        df.index = pd.to_datetime(df.index).date
        bars[s["db"]] = df
    return bars


def store_prices(conn, symbol, df):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT close FROM py_prices WHERE symbol = %s AND trade_date < %s "
            "ORDER BY trade_date DESC LIMIT 1", (symbol, df.index[0]))
        prev = cur.fetchone()
        closes = df["Close"].round(8)
        before = pd.Series([float(prev[0]) if prev else np.nan], index=[None])
        returns = pd.concat([before, closes]).pct_change().iloc[1:]
        rows = [
            (symbol, d, round(o, 8), round(h, 8), round(lo, 8), round(c, 8),
             None if pd.isna(a) else round(a, 8), int(v or 0),
             None if pd.isna(r) else float(r))
            for d, o, h, lo, c, a, v, r in zip(
                df.index, df["Open"], df["High"], df["Low"], df["Close"], df["Adj Close"],
                df["Volume"].fillna(0), returns)
        ]
        psycopg2.extras.execute_values(cur, """
            INSERT INTO py_prices (symbol, trade_date, open, high, low, close, adj_close,
                                   volume, daily_return) VALUES %s
            ON CONFLICT (symbol, trade_date) DO UPDATE SET open = EXCLUDED.open,
              high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
              adj_close = EXCLUDED.adj_close, volume = EXCLUDED.volume,
              daily_return = EXCLUDED.daily_return""", rows, page_size=1000)
    conn.commit()
    return len(rows)


def indicators(df):
    close, high, low, vol = df["close"], df["high"], df["low"], df["volume"]
    out = pd.DataFrame(index=df.index)
    for n in (20, 50, 200):
        out[f"sma_{n}"] = close.rolling(n).mean()
    out["ema_12"] = close.ewm(span=12, adjust=False).mean()
    out["ema_26"] = close.ewm(span=26, adjust=False).mean()
    out["macd"] = out["ema_12"] - out["ema_26"]
    out["macd_signal"] = out["macd"].ewm(span=9, adjust=False).mean()
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    out["rsi_14"] = 100 - 100 / (1 + gain / loss)
    mid, sd = close.rolling(20).mean(), close.rolling(20).std(ddof=0)
    out["bb_middle"], out["bb_upper"], out["bb_lower"] = mid, mid + 2 * sd, mid - 2 * sd
    out["bb_percent_b"] = (close - out["bb_lower"]) / (out["bb_upper"] - out["bb_lower"])
    tr = pd.concat([high - low, (high - close.shift()).abs(), (low - close.shift()).abs()],
                   axis=1).max(axis=1)
    out["atr_14"] = tr.ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    logret = np.log(close / close.shift())
    out["volatility_20d"] = logret.rolling(20).std() * math.sqrt(252)
    peak = close.rolling(252, min_periods=1).max()
    out["drawdown_252d"] = close / peak - 1
    out["volume_zscore_20d"] = (vol - vol.rolling(20).mean()) / vol.rolling(20).std()
    out["return_5d"] = close / close.shift(5) - 1
    out["new_52w_high"] = close >= peak
    sma50, sma200 = out["sma_50"], out["sma_200"]
    out["trend"] = np.where(sma200.isna(), None, np.where(
        (close > sma200) & (sma50 > sma200), "bull",
        np.where((close < sma200) & (sma50 < sma200), "bear", "sideways")))
    usual = out["volatility_20d"].rolling(252, min_periods=20).median()
    out["volatility_regime"] = np.where(usual.isna(), None, np.where(
        out["volatility_20d"] > 1.25 * usual, "volatile",
        np.where(out["volatility_20d"] < 0.8 * usual, "calm", "normal")))
    return out.replace([np.inf, -np.inf], np.nan)


def analyze(conn, symbol, since):
    with conn.cursor() as cur:
        cur.execute("SELECT trade_date, open, high, low, close, volume FROM py_prices "
                    "WHERE symbol = %s ORDER BY trade_date", (symbol,))
        df = pd.DataFrame(cur.fetchall(), columns=["trade_date", "open", "high", "low",
                                                   "close", "volume"])
        df = df.set_index("trade_date").astype(float)
        ind = indicators(df)
        ind = ind[ind.index >= since]
        rows = [(symbol, d, *[None if (isinstance(v, float) and math.isnan(v)) else v
                              for v in (float(x) if k in FLOATS else x
                                        for k, x in zip(COLUMNS, row))])
                for d, row in zip(ind.index, ind[COLUMNS].itertuples(index=False))]
        update = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)
        psycopg2.extras.execute_values(
            cur, f"INSERT INTO py_indicators (symbol, trade_date, {', '.join(COLUMNS)}) "
            f"VALUES %s ON CONFLICT (symbol, trade_date) DO UPDATE SET {update}", rows,
            page_size=1000)
    conn.commit()
    return len(rows)


def move_words(r):
    if r is None:
        return "was unchanged"
    a = abs(r)
    size = ("slipped" if r < 0 else "edged up") if a < 0.005 else \
        ("fell" if r < 0 else "rose") if a < 0.02 else \
        ("fell sharply" if r < 0 else "rallied strongly") if a < 0.05 else \
        ("plunged" if r < 0 else "surged")
    return f"{size} {abs(r) * 100:.2f}%"


def day_kind(r):
    if r is None:
        return "a first day"
    if abs(r) < 0.002:
        return "a quiet day"
    if r <= -0.02:
        return "a sharp sell-off"
    if r >= 0.02:
        return "a strong rally"
    return "a down day" if r < 0 else "an up day"


def narrative(s, d, close, r, ind):
    def f(k, digits=2):
        v = ind.get(k)
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else \
            f"{v:.{digits}f}"
    regime = f"a {ind.get('volatility_regime') or 'normal'} {ind.get('trend') or 'sideways'} market"
    rsi = ind.get("rsi_14")
    rsi_word = "" if rsi is None or math.isnan(rsi) else \
        " (overbought)" if rsi >= 70 else " (oversold)" if rsi <= 30 else ""
    text = (
        f"{s['db']}: {day_kind(r)} in {regime}. {s['name']} ({s['yahoo']}, "
        f"{s['category']}) {move_words(r)} on {d.isoformat()}, closing at {close:.2f}. "
        f"RSI(14) {f('rsi_14', 1)}{rsi_word}; MACD {f('macd', 3)} against signal "
        f"{f('macd_signal', 3)}. Price against SMA20 {f('sma_20')}, SMA50 {f('sma_50')}, "
        f"SMA200 {f('sma_200')}; Bollinger bands {f('bb_lower')}-{f('bb_upper')} "
        f"(%B {f('bb_percent_b')}). 20-day volatility {f('volatility_20d')}, ATR(14) "
        f"{f('atr_14')}, drawdown from the 52-week peak {f('drawdown_252d')}, 5-day return "
        f"{f('return_5d', 4)}, volume z-score {f('volume_zscore_20d')}."
    )
    meta = {"symbol": s["db"], "trade_date": d.isoformat(), "category": s["category"],
            "close": float(close), "daily_return": r,
            "trend": ind.get("trend") or "", "volatility_regime": ind.get("volatility_regime") or ""}
    for k in ("rsi_14", "drawdown_252d", "return_5d"):
        v = ind.get(k)
        if v is not None and not math.isnan(v):
            meta[k] = float(v)
    return text, meta


def narrate(conn, s, days):
    with conn.cursor() as cur:
        cur.execute(f"""
            SELECT p.trade_date, p.close, p.daily_return, {', '.join('i.' + c for c in COLUMNS)}
            FROM py_prices p JOIN py_indicators i USING (symbol, trade_date)
            WHERE p.symbol = %s AND NOT EXISTS (
              SELECT 1 FROM py_documents d WHERE d.symbol = p.symbol AND d.trade_date = p.trade_date)
              AND p.trade_date >= (SELECT min(trade_date) FROM (SELECT trade_date FROM py_prices
                  WHERE symbol = %s ORDER BY trade_date DESC LIMIT %s) last)
            ORDER BY p.trade_date""", (s["db"], s["db"], days))
        docs = []
        for row in cur.fetchall():
            d, close, r = row[0], float(row[1]), row[2]
            text, meta = narrative(s, d, close, r, dict(zip(COLUMNS, row[3:])))
            docs.append((s["db"], d, text, json.dumps(meta)))
        psycopg2.extras.execute_values(
            cur, "INSERT INTO py_documents (symbol, trade_date, document, metadata) VALUES %s "
            "ON CONFLICT (symbol, trade_date) DO UPDATE SET document = EXCLUDED.document, "
            "metadata = EXCLUDED.metadata", docs)
    conn.commit()
    return [(f"{sym}:{d.isoformat()}", text, json.loads(meta)) for sym, d, text, meta in docs]


def index(chroma_url, collection, mode, docs):
    import chromadb
    from urllib.parse import urlparse

    url = urlparse(chroma_url)
    client = chromadb.HttpClient(host=url.hostname, port=url.port or 8000)
    if mode == "shipped":
        from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

        coll = client.get_or_create_collection(collection,
                                               embedding_function=DefaultEmbeddingFunction())
        embed = None
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import ort_throughput

        session, tokenizer = ort_throughput.load(
            os.environ["EMBEDDING_MODEL_DIR"], os.environ["ONNX_MODEL"], 2)
        coll = client.get_or_create_collection(collection, embedding_function=None)

        def embed(texts):
            return ort_throughput.embed(session, tokenizer, texts)
    batch = 256
    for i in range(0, len(docs), batch):
        part = docs[i:i + batch]
        ids = [p[0] for p in part]
        texts = [p[1] for p in part]
        metas = [p[2] for p in part]
        if embed is None:
            coll.upsert(ids=ids, documents=texts, metadatas=metas)
        else:
            coll.upsert(ids=ids, documents=texts, metadatas=metas,
                        embeddings=[v.tolist() for v in embed(texts)])
    return coll.count()


def main(argv):
    if len(argv) not in (6, 9):
        sys.exit(__doc__)
    config_path, start, end, database_url, yahoo_url = argv[1:6]
    chroma = argv[6:9] if len(argv) == 9 else None
    start, end = date.fromisoformat(start), date.fromisoformat(end)
    config = yaml.safe_load(open(config_path))
    encoding = config.get("encoding") or {}
    threads = int(encoding.get("batch_size", 5))
    days = int(encoding.get("embedding_days", 30))
    secs = securities(config)
    point_yfinance_at(yahoo_url)
    steps = {"imports_s": time.perf_counter() - T0}

    t = time.perf_counter()
    bars = fetch(secs, start, end, threads)
    steps["fetch_s"] = time.perf_counter() - t

    conn = psycopg2.connect(database_url)
    with conn.cursor() as cur:
        cur.execute(SCHEMA)
    conn.commit()
    t = time.perf_counter()
    rows = indicator_rows = 0
    docs = []
    for s in secs:
        df = bars.get(s["db"])
        if df is None or df.empty:
            continue
        rows += store_prices(conn, s["db"], df)
        indicator_rows += analyze(conn, s["db"], df.index[0])
        docs += narrate(conn, s, days)
    steps["store_analyze_narrate_s"] = time.perf_counter() - t
    conn.close()

    count = None
    if chroma is not None and docs:
        t = time.perf_counter()
        count = index(*chroma, docs)
        steps["embed_index_s"] = time.perf_counter() - t
    print(json.dumps({
        "securities": len(bars), "rows": rows, "indicator_rows": indicator_rows,
        "documents": len(docs), "chroma_count": count,
        "mean_document_chars": (sum(len(d[1]) for d in docs) / len(docs)) if docs else 0,
        "steps": steps, "wall_s": time.perf_counter() - T0,
        "versions": {"yfinance": yf.__version__, "pandas": pd.__version__,
                     "psycopg2": psycopg2.__version__.split()[0]},
    }))


if __name__ == "__main__":
    main(sys.argv)
