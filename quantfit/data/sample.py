"""The embedded real sample: daily adjusted closes of 19 US stocks (1990-2024) and SPY (1993-2024).

Source: PyPortfolioOpt's cookbook data (MIT license, see ``_sample/LICENSE-PyPortfolioOpt.txt``).
Shipped inside the package as zstd-compressed parquet, so it works offline after ``pip install``.
"""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

SAMPLE_FILE = files("quantfit.data") / "_sample" / "prices.parquet"


def load_sample() -> pd.DataFrame:
    """Return the sample as a wide frame: DatetimeIndex ``date`` x tickers (``SPY`` included).

    Prices are split- and dividend-adjusted closes in USD; a ticker's cells are NaN before it
    listed (e.g. META before 2012, SPY before 1993-01-29).
    """
    with SAMPLE_FILE.open("rb") as fh:
        frame = pd.read_parquet(fh)
    frame.index.name = "date"
    return frame
