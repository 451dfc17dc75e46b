"""The time-to-accuracy benchmark: scores on the report half, keeps scoring off the clock, stops on budget."""

import json
import time

import pytest

from arclib.data.canonical import example_keys
from arclib.data.generate import DATA_DIR, load_examples
from arclib.training.time_to_accuracy import minutes_to, report_episodes, run_time_to_accuracy


def test_report_episodes_come_from_the_report_half_only():
    episodes = report_episodes(DATA_DIR, per_task=3)
    assert len(episodes) == 14 * 3
    heldout = load_examples(DATA_DIR / "heldout", ["6d0aefbc"])["6d0aefbc"]
    report_keys = set(example_keys(heldout[50:]))
    ep = [e for e in episodes if e.task_id == "6d0aefbc"]
    assert all(
        k in report_keys for e in ep for k in example_keys([(e.query_input, e.query_output), *e.context])
    )


def test_minutes_to_threshold():
    rows = [{"minutes": 0, "exact": 0.0}, {"minutes": 3, "exact": 0.3}, {"minutes": 6, "exact": 0.6}]
    assert minutes_to(rows, 0.25) == 3 and minutes_to(rows, 0.5) == 6 and minutes_to(rows, 0.9) is None


@pytest.mark.timeout(300)
def test_smoke_run_scores_off_the_clock_and_stops_on_budget(tmp_path):
    start = time.perf_counter()
    result = run_time_to_accuracy(
        "exp_3_champion",
        minutes=0.05,
        seeds=[1],
        every_minutes=0.02,
        per_task=1,
        profile="smoke",
        overrides=("--data.train_per_task=40",),
        out_dir=tmp_path,
        progress=lambda s: None,
    )
    wall = time.perf_counter() - start
    (run,) = result["runs"]
    rows = run["rows"]
    assert len(rows) >= 2 and rows[0]["minutes"] == 0 and run["steps"] > 0
    assert all(a["minutes"] < b["minutes"] for a, b in zip(rows, rows[1:]))
    assert rows[-1]["minutes"] * 60 >= 3.0  # trained until the 3-second budget
    scoring = sum(r["scoring_s"] for r in rows)
    assert rows[-1]["minutes"] * 60 + scoring <= wall  # scoring time is not on the training clock
    assert all(0 <= r[m] <= 1 for r in rows for m in ("exact", "shape", "cell")) and rows[-1]["loss"] > 0
    saved = json.loads((tmp_path / "time_to_accuracy.json").read_text())
    assert saved["minutes_to_exact"].keys() == {"0.25", "0.5"}
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 0
    assert len((tmp_path / "time_to_accuracy.csv").read_text().splitlines()) == len(rows) + 1
