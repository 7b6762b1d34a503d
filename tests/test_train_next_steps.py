"""What a finished job prints last: what happened and the next commands."""

from pathlib import Path

from train.next_steps import after_organism, results_dir


def test_the_organism_s_ending_tells_dead_npcs_from_stopped_processes(tmp_path):
    summary = {"npcs": {0: {"lifeforce": 0.0, "deaths": 1}, 1: {"lifeforce": 0.55, "deaths": 0}}}
    text = after_organism(summary, tmp_path, tmp_path / "organism", 0, None, False)
    assert text.splitlines()[0] == "in the world: 1 of 2 NPCs alive at the end, dead: 0; deaths: npc 0 x1"
    assert "per-NPC logs" in text and "runtime.organism.learn=true" in text and "checkpoint=" in text


def test_eval_results_go_beside_the_checkpoint_s_run_folder(tmp_path):
    assert results_dir("outputs/a/b/checkpoints/latest.pt", tmp_path) == Path("outputs/a/b")
    assert results_dir("/elsewhere/brains.pt", tmp_path) == tmp_path
