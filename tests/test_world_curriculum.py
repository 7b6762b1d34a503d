"""The curriculum advances when the rolling success passes the threshold, and round-trips its state."""

import pytest

from world import Curriculum, CurriculumConfig


def test_advances_only_past_threshold_and_min_episodes():
    curriculum = Curriculum(CurriculumConfig(stages=[0, 1, 2], threshold=0.8, window=10, min_episodes=10))
    assert not curriculum.record([1.0] * 9)  # too few episodes
    assert curriculum.stage == 0
    assert curriculum.record([1.0])
    assert curriculum.stage == 1 and curriculum.passed == [(0, 10)]
    assert not curriculum.record([0.5] * 30)
    assert curriculum.stage == 1 and curriculum.success == pytest.approx(0.5)
    assert curriculum.record([1.0] * 8)  # window of 10: 8 x 1.0 + 2 x 0.5 = 0.9
    assert curriculum.stage == 2


def test_finishes_after_the_last_stage():
    curriculum = Curriculum(CurriculumConfig(stages=[3], threshold=0.5, window=4, min_episodes=4))
    assert curriculum.record([1, 1, 1, 1])
    assert curriculum.finished and curriculum.stage == 3
    assert not curriculum.record([1, 1, 1, 1])


def test_state_round_trip():
    config = CurriculumConfig(stages=[0, 1], threshold=0.9, window=5, min_episodes=5)
    a = Curriculum(config)
    a.record([1, 1, 1, 1, 1, 0.2, 0.4])
    b = Curriculum(config)
    b.load_state_dict(a.state_dict())
    assert (b.stage, b.success, b.episodes_on_stage, b.passed) == (
        a.stage,
        a.success,
        a.episodes_on_stage,
        a.passed,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("stages", []), ("stages", [7]), ("threshold", 0.0), ("window", 0), ("min_episodes", 0)],
)
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=f"curriculum.{field}="):
        CurriculumConfig(**{field: value})
