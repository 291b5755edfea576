"""The reference a user could write instead of ``quantfit refresh``: polars, about 30 lines.

    python benchmarks/polars_reference.py PRICES.parquet OUT_DIR [--window 252] [--batch 2000]

Reads the long prices (``date, ticker, close``, sorted by ticker) in batches of tickers,
computes daily returns and rolling sums per ticker (n, Σx, Σy, Σx², Σxy, Σy² over the last
``window`` rows, rows with both returns present), turns them into the OLS estimates of
``y = α + β·x`` (β, α, their standard errors, R², residual vol) and writes tidy rows
(``date, asset, term, estimate, std_error, t_stat, r2, resid_vol, nobs``) as one parquet file
per batch and month. Used by ``bench_nightly.py`` as the peer measured in the same run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl


def run(prices: str, out: str, window: int = 252, batch: int = 2000, benchmark: str = "SPY") -> int:
    src = pl.scan_parquet(prices)
    x = (src.filter(pl.col("ticker") == benchmark).sort("date")
         .select("date", x=pl.col("close").pct_change()).collect())
    names = sorted(t for t in src.select(pl.col("ticker").unique()).collect()["ticker"]
                   if t != benchmark)
    rows = 0
    for b in range(0, len(names), batch):
        df = (src.filter(pl.col("ticker").is_in(names[b:b + batch])).sort("ticker", "date")
              .with_columns(y=pl.col("close").pct_change().over("ticker"))
              .join(x.lazy(), on="date", how="left").sort("ticker", "date")
              .with_columns(ok=(pl.col("y").is_not_null() & pl.col("x").is_not_null()))
              .with_columns(xv=pl.when("ok").then("x").otherwise(0.0),
                            yv=pl.when("ok").then("y").otherwise(0.0)))
        roll = lambda e: e.rolling_sum(window, min_samples=1).over("ticker")  # noqa: E731
        df = df.with_columns(n=roll(pl.col("ok").cast(pl.Float64)), sx=roll(pl.col("xv")),
                             sy=roll(pl.col("yv")), sxx=roll(pl.col("xv") ** 2),
                             sxy=roll(pl.col("xv") * pl.col("yv")), syy=roll(pl.col("yv") ** 2))
        df = df.filter(pl.col("n") >= window).with_columns(
            Sxx=pl.col("sxx") - pl.col("sx") ** 2 / pl.col("n"),
            Sxy=pl.col("sxy") - pl.col("sx") * pl.col("sy") / pl.col("n"),
            Syy=pl.col("syy") - pl.col("sy") ** 2 / pl.col("n"))
        df = df.with_columns(beta=pl.col("Sxy") / pl.col("Sxx")).with_columns(
            alpha=(pl.col("sy") - pl.col("beta") * pl.col("sx")) / pl.col("n"),
            rss=pl.col("Syy") - pl.col("beta") * pl.col("Sxy")).with_columns(
            r2=1 - pl.col("rss") / pl.col("Syy"),
            resid_vol=(pl.col("rss") / (pl.col("n") - 2)).sqrt())
        df = df.with_columns(
            se_beta=pl.col("resid_vol") / pl.col("Sxx").sqrt(),
            se_alpha=pl.col("resid_vol") * (1 / pl.col("n") + (pl.col("sx") / pl.col("n")) ** 2
                                            / pl.col("Sxx")).sqrt())
        tidy = pl.concat([
            df.select("date", asset="ticker", term=pl.lit(t), estimate=t, std_error=f"se_{t}",
                      r2="r2", resid_vol="resid_vol", nobs=pl.col("n").cast(pl.Int32))
            for t in ("alpha", "beta")
        ]).with_columns(t_stat=pl.col("estimate") / pl.col("std_error")).collect()
        tidy = tidy.sort("date", "asset", "term")
        for (month,), part in tidy.group_by(pl.col("date").dt.strftime("%Y-%m")):
            d = Path(out) / f"month={month}"
            d.mkdir(parents=True, exist_ok=True)
            part.write_parquet(d / f"batch{b // batch:03d}.parquet")
        rows += tidy.height
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prices")
    ap.add_argument("out")
    ap.add_argument("--window", type=int, default=252)
    ap.add_argument("--batch", type=int, default=2000)
    a = ap.parse_args()
    print(run(a.prices, a.out, a.window, a.batch))


if __name__ == "__main__":
    main()
