"""Exceptions that quantfit raises for problems the user can fix.

Every error a user can cause (bad file, bad ticker list, bad dates, bad parameters) is a
``QuantfitError``; the CLI turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations


class QuantfitError(Exception):
    """Base class for user-facing errors (bad input or bad parameters)."""


class DataError(QuantfitError, ValueError):
    """Input data is unusable: missing columns, bad prices or dates, duplicates, empty input."""


class FitError(QuantfitError, ValueError):
    """Regression inputs or parameters are inconsistent (shapes, window, solver, loss)."""
