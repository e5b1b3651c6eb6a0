"""Reference indicators for market-encoder's analyze stage, computed with the `ta` library and
pandas (written by other people), to cross-check the Rust implementation.

Usage: python indicators.py INPUT.csv OUTPUT.csv PERIODS_PER_YEAR
INPUT has columns date,open,high,low,close,volume; OUTPUT gets date and one column per
indicator, empty where the indicator is undefined.
"""
import sys

import numpy as np
import pandas as pd
from ta.momentum import RSIIndicator
from ta.trend import EMAIndicator, MACD, SMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands

src, dst, periods_per_year = sys.argv[1], sys.argv[2], float(sys.argv[3])
df = pd.read_csv(src)
close, high, low, volume = df["close"], df["high"], df["low"], df["volume"]

out = pd.DataFrame({"date": df["date"]})
for n in (20, 50, 200):
    out[f"sma_{n}"] = SMAIndicator(close, n).sma_indicator()
for n in (12, 26):
    out[f"ema_{n}"] = EMAIndicator(close, n).ema_indicator()
macd = MACD(close, window_slow=26, window_fast=12, window_sign=9)
out["macd"], out["macd_signal"], out["macd_hist"] = macd.macd(), macd.macd_signal(), macd.macd_diff()
out["rsi_14"] = RSIIndicator(close, 14).rsi()
bb = BollingerBands(close, window=20, window_dev=2)
out["bb_upper"], out["bb_middle"], out["bb_lower"] = bb.bollinger_hband(), bb.bollinger_mavg(), bb.bollinger_lband()
out["bb_percent_b"] = bb.bollinger_pband()
atr = AverageTrueRange(high, low, close, 14).average_true_range()
atr.iloc[:13] = np.nan  # ta reports 0 before the window is full; undefined there
out["atr_14"] = atr
log_ret = np.log(close / close.shift(1))
out["volatility_20d"] = log_ret.rolling(20).std() * np.sqrt(periods_per_year)
out["drawdown_252d"] = close / close.rolling(252, min_periods=1).max() - 1
vol_std = volume.rolling(20).std()
out["volume_zscore_20d"] = ((volume - volume.rolling(20).mean()) / vol_std).where(vol_std > 0)
out["return_5d"] = close.pct_change(5, fill_method=None)
out.to_csv(dst, index=False, float_format="%.17g")
