"""The run's progress bar and metric files, as a user sees them."""

from train.config import LoggerConfig
from train.tracking import Tracker


def test_the_progress_bar_finishes_on_its_total_when_the_last_update_overshoots(tmp_path):
    tracker = Tracker(LoggerConfig(mode="disabled"), tmp_path, {}, total=100)
    tracker.log({"charts/success": 0.5}, 60)
    tracker.log({"charts/success": 0.5}, 120)  # an update ends past the budget
    assert tracker.bar.n == tracker.bar.total == 120
    assert "100%" in str(tracker.bar)
    tracker.close()


def test_a_tracker_that_logs_no_row_leaves_no_metrics_file(tmp_path):
    Tracker(LoggerConfig(mode="disabled"), tmp_path, {}, total=0, progress=False).close()
    assert not (tmp_path / "metrics.jsonl").exists()
    tracker = Tracker(LoggerConfig(mode="disabled"), tmp_path, {}, total=10)
    tracker.log({"charts/SPS": 1.0}, 5)
    tracker.close()
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1
