"""Named beta definitions: the options practitioners' betas use, as ``qf.fit_rolling`` keywords.

    >>> qf.fit_rolling(stocks, spy, preset="bloomberg")        # 2 years of weekly returns, Blume
    >>> qf.fit_rolling(stocks, spy, preset="ewma", every="M")  # options given override the preset's

A preset is a set of ``fit_rolling`` keywords; any keyword given explicitly replaces the
preset's value (a spec object such as ``window=WindowSpec(...)`` replaces every value of its
part). Inputs are what each definition regresses: y are the assets' **daily simple returns**
and x the index's (or the factors') daily returns; ``freq`` compounds both to weekly or monthly
returns on the same calendar periods first (``qf.compound``), so the presets take the same
daily inputs.

=============  ==========================================================================
``bloomberg``  ``freq="W"``, ``window="104W"``, ``min_obs=52``, ``adjust="blume"``: two years of
               weekly returns (weeks ending Friday) against the index, and the Blume-adjusted
               beta 0.67·β + 0.33 beside the raw one (``fit.beta_adjusted``). Source: the
               defaults of Bloomberg's BETA function (2 years, weekly, local index, adjusted
               beta 0.67·raw + 0.33·1.0, after Blume 1971). ``min_obs=52`` (one year of
               weeks) is quantfit's choice: the terminal publishes no minimum.
``monthly60``  ``freq="M"``, ``window="60M"``, ``min_obs=24``: 60 months of monthly returns,
               at least 24, one estimate per month end. Source: Fama & French (1992), betas
               "on 24 to 60 monthly returns (as available) in the 5 years before", the
               CRSP / WRDS convention and tidyfinance's monthly beta.
``ewma``       ``window=252``, ``halflife=63``, ``min_obs=126``: one year of daily returns,
               exponentially weighted with a half-life of a quarter (63 days). Source: the
               MSCI Barra USE4 beta descriptor (252 trading days, half-life 63 days).
               ``min_obs=126`` (half a year) is quantfit's choice.
``welch``      ``window=252``, ``halflife=126·ln 2 ≈ 87.3``, ``min_obs=126``,
               ``winsorize="welch"``: daily returns slope-winsorized at −2 and +4 times the
               market's return, then weighted least squares with Welch's age decay
               exp(−2·age/252) (his "bswa32": winsorizing parameter 3, age parameter 2; a
               half-life of about four months). Source: Welch (2022), "Simply Better Market
               Betas", Critical Finance Review 11(1). One year of rows (older rows weigh
               below 14 %) and ``min_obs=126`` are quantfit's choices.
=============  ==========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from quantfit.errors import FitError

#: Welch's age decay exp(−2·age/252) as a half-life in rows: 252·ln 2 / 2.
WELCH_HALFLIFE = 126.0 * math.log(2.0)


@dataclass(frozen=True)
class Preset:
    """A named beta definition: ``options`` are ``fit_rolling`` keywords; ``source`` says where
    the definition comes from (README: "Which beta?")."""

    name: str
    options: dict[str, Any] = field(hash=False)
    summary: str
    source: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("bloomberg",
           dict(freq="W", window="104W", min_obs=52, adjust="blume"),
           "2 years of weekly returns against the index; Blume-adjusted beta 0.67·β + 0.33",
           "Bloomberg BETA function defaults; Blume (1971)"),
    Preset("monthly60",
           dict(freq="M", window="60M", min_obs=24),
           "60 months of monthly returns, at least 24; one estimate per month end",
           "Fama & French (1992); CRSP/WRDS beta convention"),
    Preset("ewma",
           dict(window=252, halflife=63.0, min_obs=126),
           "252 days of daily returns, exponentially weighted, half-life 63 days",
           "MSCI Barra USE4 beta descriptor"),
    Preset("welch",
           dict(window=252, halflife=WELCH_HALFLIFE, min_obs=126, winsorize="welch"),
           "daily returns slope-winsorized at (-2, 4)·r_m, age decay exp(-2·age/252)",
           "Welch (2022), Simply Better Market Betas, Critical Finance Review 11(1)"),
)}


def get(name: Any) -> Preset:
    """The preset called ``name``; ``FitError`` naming the valid ones otherwise."""
    if not isinstance(name, str) or name not in PRESETS:
        raise FitError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
