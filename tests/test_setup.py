"""The set-up promises of the README: CI runs exactly the README's test command, the package
ships its sample, and the public import surface is what ``__all__`` says."""

from __future__ import annotations

import re
from pathlib import Path

import quantfit as qf

ROOT = Path(__file__).resolve().parents[1]


def _ci_test_command() -> str:
    text = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"# --- test command \(README\) ---\n(.*?)\n# --- end ---", text, re.S)
    assert block, ".ci/run lost its marked test command"
    return block.group(1).strip()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert _ci_test_command() in readme


def test_readme_never_installs_cuda_torch_by_default():
    # a bare `pip install torch` (or `-e .` before torch) would pull the multi-GB CUDA build
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("python3 -m venv"):
            assert line.index("torch==2.13.0") < line.index("pip install -e")


def test_public_names_exist():
    for name in qf.__all__:
        assert hasattr(qf, name), name


def test_import_and_light_commands_do_not_load_torch():
    # `quantfit ingest/prices` and strategies reading betas must not pay for torch/matplotlib
    import subprocess
    import sys
    code = ("import sys, quantfit as qf, quantfit.cli; qf.PriceStore; qf.read_betas; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert callable(qf.fit_rolling) and qf.RollingFit.__name__ == "RollingFit"  # lazy names resolve
    assert "fit_rolling" in dir(qf)
