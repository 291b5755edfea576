"""``qf.sources.factor_model``: the classic factor models by name, from the Ken French files.

    >>> ff = qf.sources.factor_model("ff3")                 # daily: Mkt-RF, SMB, HML, RF
    >>> ffm = qf.sources.factor_model("carhart", freq="M")  # monthly: Mkt-RF, SMB, HML, MOM, RF

Models (``MODELS``) and the library files they read (``freq="D"`` reads the ``_daily`` file):

=========  ==================================  ==========================================
model      factors (then ``RF``)               files
=========  ==================================  ==========================================
capm       Mkt-RF                              F-F_Research_Data_Factors
ff3        Mkt-RF, SMB, HML                    F-F_Research_Data_Factors
ff5        Mkt-RF, SMB, HML, RMW, CMA          F-F_Research_Data_5_Factors_2x3
carhart    Mkt-RF, SMB, HML, MOM               F-F_Research_Data_Factors, F-F_Momentum_Factor
=========  ==================================  ==========================================

Conventions:

* Wide factor returns in **decimals** (as ``qf.sources.french``), DatetimeIndex ``date``:
  trading days for ``freq="D"``, the **last calendar day of the month** for ``freq="M"``
  (the labels ``qf.compound(returns, "M")`` gives, so monthly stock returns and the monthly
  files line up as they are). Columns: the model's factors, then ``RF``, the per-period
  risk-free rate (daily or monthly) for ``qf.excess_returns`` / ``qf.returns(..., rf=)``.
* The momentum factor, ``Mom`` in the library's file (padded with spaces), is named ``MOM``.
* Carhart reads two files: its rows are the **dates both files have** (an inner join). The
  momentum series starts later (daily 1926-11-03, monthly 1927-01) than the three factors
  (1926-07), so the model starts there; each file may also end at a different month when
  one was downloaded later. A date missing from one file *inside* the common range is
  dropped too, with a ``FactorDatesWarning`` naming it (the library's files have none).
* Missing values (-99.99, -999 in the files) stay NaN; ``RF`` comes from the model's first
  file.
* **Where the files come from**: ``factors_dir`` first, under the library's own names: the
  zip as downloaded, ``<dataset>_CSV.zip`` (or ``<dataset>.zip``), or the CSV inside it,
  ``<dataset>.csv`` (any case of the extension), in that order of preference. A file found
  there is used as it is (replace it to update it). Otherwise the dataset is downloaded
  from the Ken French data library (``fetch``: url -> bytes, default ``urllib``), unless
  ``download=False``. With neither: ``DataError``, one line naming the file to place, the
  folder and the URL to get it from.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pandas as pd

from quantfit.data.sources.french import FTP_URL, french
from quantfit.errors import DataError

#: model name -> its factors, in column order (``RF`` follows them in the frame).
MODELS: dict[str, tuple[str, ...]] = {
    "capm": ("Mkt-RF",),
    "ff3": ("Mkt-RF", "SMB", "HML"),
    "ff5": ("Mkt-RF", "SMB", "HML", "RMW", "CMA"),
    "carhart": ("Mkt-RF", "SMB", "HML", "MOM"),
}
FREQS = ("D", "M")
MOMENTUM = "MOM"  # the model's name for the library's "Mom" column

_FF3 = "F-F_Research_Data_Factors"
_FF5 = "F-F_Research_Data_5_Factors_2x3"
_MOM = "F-F_Momentum_Factor"
#: model -> the library datasets it reads (monthly names; daily ones add "_daily").
FILES: dict[str, tuple[str, ...]] = {"capm": (_FF3,), "ff3": (_FF3,), "ff5": (_FF5,), "carhart": (_FF3, _MOM)}
_DATE_KEY = {"D": "YYYYMMDD", "M": "YYYYMM"}


class FactorDatesWarning(UserWarning):
    """A model's files disagree on a date inside their common range; the date was dropped."""


def dataset_name(base: str, freq: Literal["D", "M"]) -> str:
    """The library's dataset name: ``base`` for monthly, ``base + "_daily"`` for daily."""
    return f"{base}_daily" if freq == "D" else base


def _local_file(folder: Path, name: str) -> Path | None:
    """The file for dataset ``name`` in ``folder`` (zip first, then csv), or None."""
    try:
        entries = [p for p in folder.iterdir() if p.is_file()]
    except FileNotFoundError:
        return None  # no folder yet: nothing placed there
    except NotADirectoryError:
        raise DataError(f"factors_dir {folder} is not a directory") from None
    except OSError as exc:
        raise DataError(f"factors_dir {folder}: cannot list it ({exc.strerror or exc})") from None
    for candidate in (f"{name}_CSV.zip", f"{name}.zip", f"{name}.csv"):
        hits = sorted(p for p in entries if p.name.lower() == candidate.lower())
        if len(hits) > 1:
            raise DataError(f"{folder}: {len(hits)} files match {candidate} "
                            f"({', '.join(p.name for p in hits)}); keep one")
        if hits:
            return hits[0]
    return None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _load(name: str, freq: str, folder: Path, fetch: Callable[[str], bytes] | None,
          download: bool) -> tuple[pd.DataFrame, str]:
    """One dataset as parsed by ``french``, and where it came from (a path or a URL)."""
    path = _local_file(folder, name)
    if path is not None:
        frame, origin = french(path), str(path)
    else:
        url = FTP_URL.format(name=name)
        where = (f"place {name}_CSV.zip (or the {name}.csv inside it) in {folder}/ "
                 f"(download it from {url})")
        if not download:
            raise DataError(f"Ken French dataset {name} is not in {folder}/ and download=False: {where}")
        try:
            frame = french(name, fetch=fetch)
        except (DataError, OSError) as exc:
            raise DataError(f"Ken French dataset {name} is not in {folder}/ and could not be "
                            f"downloaded ({_one_line(exc)}): {where}") from None
        origin = url
    if frame.attrs.get("date_key") != _DATE_KEY[freq]:
        raise DataError(f"{origin}: expected {'daily' if freq == 'D' else 'monthly'} rows keyed "
                        f"{_DATE_KEY[freq]}, found {frame.attrs.get('date_key')} keys (wrong file?)")
    return frame, origin


def _columns(frame: pd.DataFrame, wanted: tuple[str, ...], origin: str) -> pd.DataFrame:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(f"{origin}: no column {', '.join(missing)} (has {', '.join(frame.columns)}; wrong file?)")
    return frame[list(wanted)]


def _momentum(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    hits = [c for c in frame.columns if c.strip().lower() == "mom"]
    if len(hits) != 1:
        raise DataError(f"{origin}: expected one momentum column 'Mom', has {', '.join(frame.columns)} (wrong file?)")
    return frame[hits].set_axis([MOMENTUM], axis=1)


def _inner_join(left: pd.DataFrame, right: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    """Rows on the dates both have; warn about dates one lacks inside the common range."""
    lo = max(left.index[0], right.index[0])
    hi = min(left.index[-1], right.index[-1])
    if lo > hi:
        raise DataError(f"{names[0]} ({left.index[0].date()} to {left.index[-1].date()}) and "
                        f"{names[1]} ({right.index[0].date()} to {right.index[-1].date()}) share no dates")
    joined = left.join(right, how="inner")
    inside = left.index[(left.index >= lo) & (left.index <= hi)].union(
        right.index[(right.index >= lo) & (right.index <= hi)])
    dropped = inside.difference(joined.index)
    if len(dropped):
        warnings.warn(f"{len(dropped)} date(s) inside {lo.date()} to {hi.date()} are in only one of "
                      f"{names[0]} and {names[1]} and were dropped (first {dropped[0].date()})",
                      FactorDatesWarning, stacklevel=3)
    return joined


def factor_model(name: str, freq: Literal["D", "M"] = "D",
                 factors_dir: str | os.PathLike = "data/factors",
                 fetch: Callable[[str], bytes] | None = None, *,
                 download: bool = True) -> pd.DataFrame:
    """Factor returns of a named model (capm, ff3, ff5, carhart) from the Ken French files.

    Parameters
    ----------
    name : ``"capm"``, ``"ff3"``, ``"ff5"`` or ``"carhart"`` (case-insensitive).
    freq : ``"D"`` (the ``_daily`` files) or ``"M"`` (the monthly files).
    factors_dir : folder searched first for the library's files (``<dataset>_CSV.zip``,
        ``<dataset>.zip`` or ``<dataset>.csv``); it need not exist.
    fetch : ``url -> bytes`` used to download a dataset missing from ``factors_dir``
        (default: ``urllib``); inject your own for proxies, caching or tests.
    download : ``False`` never downloads: a missing file is a ``DataError`` at once.

    Returns
    -------
    DataFrame, DatetimeIndex ``date`` x (the model's factors, then ``RF``), float64 decimals.
    ``attrs``: ``model``, ``freq``, ``factors`` (the factor columns, without RF) and
    ``sources`` (the file paths or URLs read).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise DataError(f"unknown factor model {name!r}; choose one of {', '.join(MODELS)}")
    if freq not in FREQS:
        raise DataError(f"factor model freq must be 'D' (daily files) or 'M' (monthly files), got {freq!r}")
    folder = Path(factors_dir)
    loaded = [_load(dataset_name(base, freq), freq, folder, fetch, download) for base in FILES[key]]
    (first, origin), *others = loaded
    columns = tuple(f for f in MODELS[key] if f != MOMENTUM) + ("RF",)
    frame = _columns(first, columns, origin)
    for other, other_origin in others:  # carhart: the momentum file
        frame = _inner_join(frame, _momentum(other, other_origin),
                            (dataset_name(FILES[key][0], freq), dataset_name(_MOM, freq)))
    frame = frame[list(MODELS[key]) + ["RF"]].copy()
    frame.attrs = {"model": key, "freq": freq, "factors": list(MODELS[key]),
                   "sources": [origin for _, origin in loaded]}
    return frame
