"""The embedded sample (``qf.load_sample``) as a long frame, for ``PriceStore.ingest``."""

from __future__ import annotations

import pandas as pd

from quantfit.data.frames import to_long, validate_long
from quantfit.data.sample import load_sample


def sample() -> pd.DataFrame:
    """The embedded sample, long: ``date, ticker, close, volume`` (volume all NaN: not shipped).

    One row per ticker and trading day on which the ticker had a price (the wide frame's NaN
    cells before a listing are dropped), ordered by ticker then date.
    """
    return validate_long(to_long(load_sample()), source="sample")
