"""The nightly job on a real Dask cluster (``LocalCluster(n_workers=2, processes=True)``):
identical results to one process, a killed worker's task rerun, a killed driver harmless, and
bad addresses refused quickly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import distributed  # in the test extra: these tests always run
import numpy as np
import pandas as pd
import pytest

import quantfit as qf
from quantfit.data.store import PriceStore
from quantfit.refresh import RefreshParams, refresh
from quantfit.results_store import read_tidy

UNIVERSE = ["AAPL", "BABA", "GE", "JPM", "MA", "XOM"]
CUT = pd.Timestamp("2023-06-15")


@pytest.fixture(scope="module")
def sample_long():
    long = qf.sources.sample()
    return long[(long["date"] >= "2015-01-01") & long["ticker"].isin(UNIVERSE + ["SPY"])].reset_index(drop=True)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def params(store, out, **kw) -> RefreshParams:
    return RefreshParams(store=str(store), out=str(out), universe=list(UNIVERSE), report=False,
                         store_given=True, group_size=kw.pop("group_size", 2), **kw)


def assert_same(out_a, out_b, atol: float = 1e-12, exact=("n_iter",)) -> None:
    a, _ = read_tidy(out_a)
    b, _ = read_tidy(out_b)
    assert len(a) == len(b) and len(a)
    for c in ("date", "asset", "term", "nobs", "converged", *exact):
        assert (a[c].to_numpy() == b[c].to_numpy()).all(), c
    for c in ("estimate", "std_error", "t_stat", "r2", "resid_vol"):
        np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=0, atol=atol,
                                   err_msg=c)


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_dask_equals_one_process_full_and_incremental(tmp_path, sample_long, client, loss):
    extra = {"loss": loss, "window": 126} if loss == "huber" else {}
    store = tmp_path / "s"
    PriceStore(store).ingest(sample_long[sample_long["date"] <= CUT])
    one, dask = tmp_path / "one", tmp_path / "dask"
    a = refresh(params(store, one, **extra))
    b = refresh(params(store, dask, **extra), client=client)
    assert a.mode == b.mode == "full" and b.files_written == a.files_written
    assert_same(one, dask)
    PriceStore(store).ingest(sample_long)  # the nights after the cut
    a = refresh(params(store, one, **extra))
    b = refresh(params(store, dask, **extra), client=client)
    assert a.mode == b.mode == "incremental" and b.dates_fitted == a.dates_fitted
    assert_same(one, dask)


def test_a_killed_worker_has_its_task_rerun(tmp_path, sample_long, client):
    store = tmp_path / "s"
    PriceStore(store).ingest(sample_long)
    ref = tmp_path / "ref"
    refresh(params(store, ref, loss="huber", window=126, group_size=1))
    out = tmp_path / "out"
    pids = list(client.run(os.getpid).values())
    result: dict = {}
    job = threading.Thread(target=lambda: result.setdefault(
        "outcome", refresh(params(store, out, loss="huber", window=126, group_size=1), client=client)))
    job.start()
    deadline = time.monotonic() + 120
    while not list(out.glob("*/month=*/*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.02)  # the first part files: tasks are running
    os.kill(pids[0], signal.SIGKILL)  # a worker dies mid-run (its nanny starts another)
    job.join(timeout=300)
    assert not job.is_alive() and result["outcome"].mode == "full"
    assert pids[0] not in client.run(os.getpid).values()
    assert_same(out, ref)


CHILD = """
import sys
from quantfit.cli import main
sys.exit(main(["refresh", "--store", sys.argv[1], "--out", sys.argv[2], "--universe", sys.argv[3],
               "--group-size", "1", "--loss", "huber", "--window", "126", "--no-report", "-q",
               "--dask", "local:2"]))
"""


def test_a_killed_driver_leaves_the_previous_results_and_the_next_run_completes(tmp_path, sample_long):
    store = tmp_path / "s"
    PriceStore(store).ingest(sample_long[sample_long["date"] <= CUT])
    out = tmp_path / "out"
    kw = dict(loss="huber", window=126, group_size=1)
    refresh(params(store, out, **kw))
    before, _ = read_tidy(out)
    PriceStore(store).ingest(sample_long)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store), str(out), ",".join(UNIVERSE)],
                            start_new_session=True)
    key = (out / "LATEST").read_text().strip()
    old_parts = set((out / key).glob("month=*/*.parquet"))
    deadline = time.monotonic() + 120
    while set((out / key).glob("month=*/*.parquet")) == old_parts and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local cluster
    proc.wait(timeout=30)
    after, m = read_tidy(out)  # the previous results: intact and readable
    pd.testing.assert_frame_equal(after, before)
    assert m["generation"] == 1
    outcome = refresh(params(store, out, **kw))  # the next run cleans up and completes
    assert outcome.mode == "incremental"
    fresh = tmp_path / "fresh"
    refresh(params(store, fresh, **kw))
    # Huber iterates to its tolerance: an incremental night (fitted on the tail) and a full
    # rebuild start from other working units, so they agree to the tolerance, not the bit.
    assert_same(out, fresh, atol=1e-8, exact=())
    live = {e["file"] for ms in read_tidy(out)[1]["files"].values() for e in ms.values()}
    assert {str(p.relative_to(out / key)) for p in (out / key).glob("month=*/*.parquet")} == live


@pytest.mark.parametrize("address, match, limit", [
    ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler at tcp://127.0.0.1:9", 15),
    ("nonsense", "bad --dask address 'nonsense'", 5),
    ("local:0", "local:N needs 1 <= N <= 512 workers", 5),
])
def test_bad_or_unreachable_scheduler_is_one_line_exit_2(tmp_path, sample_long, address, match, limit):
    store = tmp_path / "s"
    PriceStore(store).ingest(sample_long)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "quantfit.cli", "refresh", "--store", str(store),
                           "--out", str(tmp_path / "r"), "--dask", address, "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("quantfit: error: ")
    assert match in proc.stderr
    assert time.monotonic() - t0 < limit
    assert not Path(tmp_path / "r").exists()


def test_workers_tune_glibc_malloc_for_tensors():
    """Dask's nanny freezes glibc's mmap threshold at 128 KiB (MALLOC_TRIM_THRESHOLD_); each
    task raises it again where the C library is glibc."""
    import platform

    from quantfit.refresh.distributed import tune_malloc
    assert tune_malloc() is (platform.libc_ver()[0] == "glibc")
