"""python -m gptlib.course time: the kernels' environment, the competing process, the table."""

from __future__ import annotations

import nbformat

from gptlib import threads
from gptlib.course.__main__ import main
from gptlib.course.timing import Timing, competing_process, kernel_env, table, time_notebooks


def test_kernels_set_the_wait_policy_themselves_and_get_the_pinned_threads(monkeypatch):
    monkeypatch.setattr(threads, "SET_BY_GPTLIB", True)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    env = kernel_env("2", {"GOMP_SPINCOUNT": "300000"})
    assert "OMP_WAIT_POLICY" not in env  # a learner's kernel has only its own `import gptlib` to set it
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2" and env["GOMP_SPINCOUNT"] == "300000"
    assert "OMP_NUM_THREADS" not in kernel_env(None)  # torch's own choice of threads
    monkeypatch.setattr(threads, "SET_BY_GPTLIB", False)  # the user set it: every kernel gets it
    assert kernel_env()["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_competing_process_runs_only_inside_the_block():
    with competing_process() as proc:
        assert proc.poll() is None
    assert proc.poll() is not None


def test_the_table_gives_medians_ratios_slow_cells_and_the_budget():
    fast = Timing("00_a", quiet=[4.0, 5.0, 6.0], busy=[8.0, 9.0, 10.0])
    slow = Timing("06_b", quiet=[70.0], busy=[200.0], slow_cells={25: 64.0})
    text = table([fast, slow])
    assert "| 00_a | 5.0 | 9.0 | 1.80x | none |" in text
    assert "| 06_b | 70.0 | 200.0 | 2.86x | 25 (64 s) |" in text
    assert "| all | 75 | 209 | 2.79x |  |" in text
    assert "each lesson at most 60 s quiet: NO: 06_b" in text and "busy at most 2.5x quiet: NO: 06_b" in text
    assert "busy" not in table([Timing("00_a", quiet=[1.0])]).splitlines()[0]


def test_a_notebook_is_timed_quiet_and_busy(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.environ.get('OMP_NUM_THREADS'))")]
    path = tmp_path / "00_tiny.ipynb"
    nbformat.write(nb, path)
    lines = []
    (t,) = time_notebooks([path], busy=True, report=lines.append)
    assert len(t.quiet) == len(t.busy) == 1 and t.quiet[0] > 0 and t.busy[0] > 0
    assert [line.split(":")[0] for line in lines] == ["round 1/1 00_tiny quiet", "round 1/1 00_tiny busy"]


def test_the_command_line_checks_its_arguments(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["time"]) == 2
    assert "no notebooks" in capsys.readouterr().err
    assert main(["time", "--env", "NOEQUALS", str(tmp_path / "x.ipynb")]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
