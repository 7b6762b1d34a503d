"""benchmarks.cortex's stage-4 keys: the gated run looks through vision (the default), a blind run beside."""

from __future__ import annotations

import pytest

from benchmarks.cortex import stage4_figures


@pytest.mark.slow
def test_the_gated_run_looks_through_vision_and_the_run_without_it_is_reported_beside_it() -> None:
    out = stage4_figures(episodes=4)
    assert out["stage4_episodes"] == 4
    assert out["stage4_vision_calls"] > 0  # governed by default: the heuristic governor's organ gates opened
    runs = ("no_cortex", "cortex_gated", "cortex_gated_no_vision", "cortex_open", "cortex_http")
    for key in (f"stage4_success_{run}" for run in runs):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["stage4_return_cortex_gated_no_vision"] != out["stage4_return_no_cortex"]  # the cortex acted
    assert 0 < out["escalations_per_100_ticks"] and 0 < out["stage4_escalations_per_100_ticks_no_vision"]
    assert out["stage4_http_latency_p50_ms"] > 0  # the HTTP run did ask the embedded server
