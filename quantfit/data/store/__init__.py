"""``PriceStore``: a crash-safe, upserting parquet store of daily prices whose appends cost
what is new.

    >>> store = qf.PriceStore("data/store")
    >>> store.ingest(qf.sources.sample())                    # long: date, ticker, close[, volume]
    >>> store.prices(["AAPL", "SPY"], start="2015-01-01")    # wide: date x ticker, float64
    >>> store.prices(chunk, start=new_day, lookback=252)     # tails: last 252 rows + the new ones
    >>> changed = store.changes_since(last_gen)              # {ticker: earliest date changed}

Layout on disk (format ``quantfit-pricestore`` v2)::

    manifest.json                     the commit point: live files, ticker table, change log
    .lock                             fcntl lock file; writers hold it exclusively
    data/s007-2019-<id>.parquet       segment: bucket 7's rows of whole years (here from 2019)
    data/d007-g42-<id>.parquet        delta: bucket 7's rows written by generation 42
    data/c-g42-<id>.parquet           change log: per ticker, earliest date changed in gen 42

**Why this layout.** A nightly append touches every ticker but only its newest day; a revision
(Yahoo re-adjusting a ticker's past at a dividend) touches one ticker's whole history; a job
reads either every ticker's tail or a chunk of tickers' full history. So rows are cut twice:

* by ticker **bucket** (``crc32(ticker) % buckets``, 64 by default): a chunk of tickers reads
  its buckets only (``ticker_groups`` hands out chunks along bucket lines);
* by **calendar years** within a bucket (*segments* of whole years, grown to ~25,000 rows):
  a date range reads only the years it overlaps, a tail read only the newest one or two
  segments per bucket, and a rewrite of recent years leaves old years alone.

Appends and revisions are not merged into segments at once: they go into **deltas** (one
small file per touched bucket per ingest, overriding the segments on read), and a bucket's
deltas are folded into its segments when they reach a quarter of the rows they fall into, or
merged together when there are more than eight. Folding is budgeted per ingest (a constant
plus a multiple of the rows ingested), so no ingest rewrites history in bulk, and the total
work stays proportional to the rows written (amortized O(new rows)). ``compact`` folds
everything at once. We preferred this to date-partitioned files alone (one file per day or
month of all tickers): those make appends cheap too, but a chunk of 1,000 tickers would then
read every file of the store, and a revised ticker would rewrite every partition. Bucket x
year segments + deltas give both access paths their own small set of files.

A pure append reads no stored rows: the ticker table in the manifest knows each ticker's
first and last date, so only input rows inside a ticker's stored range are compared with the
stored ones (to count replaced/unchanged and keep volumes), and only the files that overlap
them are read.

Guarantees:

* **Upsert by (date, ticker).** A new key is added; an existing key with a different value is
  replaced; an identical key is left alone. Re-ingesting the same data writes nothing.
  Columns absent from the input (``volume``) keep their stored values.
* **Validate first.** The input is checked completely (``validate_long``), then the manifest
  (every key, type and invariant) and the size of every file it lists, before anything is
  written or deleted: a damaged store raises ``DataError`` naming the file, and stays as it is.
* **Atomic commits.** New files get fresh names and are fsynced; the commit point is an
  ``os.replace`` of ``manifest.json``. A process killed at any moment leaves the old state or
  the complete new one, never a mix; leftovers are deleted by the next writer. Files are
  checksummed (SHA-256 in the manifest, page CRCs inside): ``verify`` checks them all.
* **Serialized writers.** ``ingest``, ``compact`` and ``migrate`` hold an exclusive
  ``fcntl.flock`` on ``.lock``. Readers take no lock: they read one manifest and the files it
  names, and start again if a writer removed a superseded file in between (a file the current
  manifest still lists but that is gone is damage, reported at once).
* **Change tracking.** Each ingest that changes rows is a generation (so is a migration that
  renames tickers); ``changes_since(g)``
  says which tickers changed after ``g`` and from which date (see ``changes``).
* **v1 stores** (one file per bucket) open and read as they are; the first write, or
  ``migrate``, rewrites them in this format. ``migrate`` also renames tickers stored before
  the ticker rule (``aapl`` -> ``AAPL``; see ``migrating``).
"""

from quantfit.data.store.changes import ChangeSet, ChangesUnavailable
from quantfit.data.store.layout import DATA_DIR, bucket_of
from quantfit.data.store.manifest import FORMAT, MANIFEST, VERSION
from quantfit.data.store.pricestore import DEFAULT_BUCKETS, LOCK_FILE, PriceStore
from quantfit.data.store.summaries import IngestSummary, MaintenanceSummary, VerifyReport

__all__ = ["PriceStore", "IngestSummary", "MaintenanceSummary", "VerifyReport", "ChangeSet",
           "ChangesUnavailable", "bucket_of", "MANIFEST", "FORMAT", "VERSION", "DATA_DIR",
           "LOCK_FILE", "DEFAULT_BUCKETS"]
