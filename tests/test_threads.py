"""gptlib lets torch's idle threads sleep (OMP_WAIT_POLICY=PASSIVE), set before torch loads; never over the user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

THREADS = Path(__file__).resolve().parents[1] / "gptlib" / "threads.py"
WAIT = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_DISPLAY_ENV")


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    """Python in a fresh process, with no wait setting of ours inherited, and `env` on top."""
    clean = {k: v for k, v in os.environ.items() if k not in WAIT}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_importing_gptlib_sets_the_passive_policy_before_torch_loads():
    done = run("import os, gptlib; print(os.environ['OMP_WAIT_POLICY'], gptlib.threads.SET_BY_GPTLIB)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["PASSIVE", "True"]  # True: torch was not loaded yet when it ran
    # threads.py itself imports nothing that loads torch (it runs first in gptlib/__init__.py).
    alone = run(
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('threads', {str(THREADS)!r}); "
        "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
        "print('torch' in sys.modules)"
    )
    assert alone.stdout.split() == ["False"], alone.stderr


def test_the_openmp_runtime_reads_it():
    # GNU OpenMP (torch's on Linux) prints its settings when it loads: idle threads spin 0 times.
    done = run("import gptlib", OMP_DISPLAY_ENV="verbose")
    if "GOMP_SPINCOUNT" not in done.stderr:
        pytest.skip("this torch does not use GNU OpenMP (macOS, Windows): nothing to read the count from")
    assert "GOMP_SPINCOUNT = '0'" in done.stderr, done.stderr[-2000:]
    spinning = run("import torch, gptlib", OMP_DISPLAY_ENV="verbose")  # torch first: too late, as documented
    assert "GOMP_SPINCOUNT = '300000'" in spinning.stderr


@pytest.mark.parametrize(
    "setting", [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "1000"), ("KMP_BLOCKTIME", "5")]
)
def test_a_wait_setting_of_the_users_is_kept(setting):
    name, value = setting
    done = run(
        "import os, gptlib; print(os.environ.get('OMP_WAIT_POLICY'), gptlib.threads.SET_BY_GPTLIB)",
        **{name: value},
    )
    expected = value if name == "OMP_WAIT_POLICY" else "None"
    assert done.stdout.split() == [expected, "False"], done.stderr


def test_nothing_is_set_once_torch_is_loaded():
    done = run(
        "import os, torch, gptlib; print(os.environ.get('OMP_WAIT_POLICY'), gptlib.threads.SET_BY_GPTLIB)"
    )
    assert done.stdout.split() == ["None", "False"], done.stderr
