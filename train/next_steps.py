"""What a finished `python -m train` job prints last: what it did, where its files are, what to run next."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from world import stage_config
from world.rollout import BASELINE_SUCCESS

#: Width of the label column of the "next:" lines.
LABEL = 17


def shown(path: str | os.PathLike) -> str:
    """A path as the user can paste it: relative to the current folder when inside it, else absolute."""
    path = Path(path).resolve()
    here = Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def command(*args: str) -> str:
    """`python -m train` with these arguments, quoted for a shell."""
    return " ".join(["python -m train", *(shlex.quote(a) for a in args)])


def stage_name(stage: int) -> str:
    """`stage 4 (locks)`."""
    return f"stage {stage} ({stage_config(stage).name})"


def _next(commands: list[tuple[str, str]]) -> list[str]:
    return ["next:"] + [f"  {label + ':':<{LABEL}} {line}" for label, line in commands]


def _baselines(stage: int) -> str:
    ref = BASELINE_SUCCESS.get(stage)
    if ref is None:
        return ""
    return (
        f"for scale, on {stage_name(stage)} the scripted heuristic succeeds {ref['heuristic']:.3f}, "
        f"random {ref['random']:.3f}"
    )


def results_dir(checkpoint: str | os.PathLike, fallback: Path) -> Path:
    """Where mode=eval writes: the training run's folder (the one holding `checkpoints/`), else `fallback`."""
    path = Path(checkpoint)
    return path.parent.parent if path.parent.name == "checkpoints" else Path(fallback)


def after_training(summary: dict[str, Any], run_dir: Path, threshold: float, budget: int) -> str:
    """The end of a training run: the stage reached and what it means, the run folder, the next commands."""
    stage, success = summary["stage"], summary["success"]
    checkpoint = shown(summary["checkpoint"])
    lines = [
        f"trained {summary['agent_steps']:,} agent steps in {summary['wall_s']:.0f} s: "
        f"{stage_name(stage)}, rolling success {success:.3f} (a stage passes at {threshold:.3f})"
    ]
    passed = [int(row["stage"]) for row in summary["passed"]]
    if summary["world"] == "progressive":
        done = f"passed stages {', '.join(map(str, passed))}" if passed else "passed no stage yet"
        if summary["finished"]:
            lines.append(f"  {done}: the curriculum is finished")
        elif summary["interrupted"]:
            lines.append(f"  {done}; interrupted on {stage_name(stage)}")
        else:
            lines.append(
                f"  {done}; the budget ({budget:,} agent steps) ran out on {stage_name(stage)}: "
                "train longer to go on"
            )
    scale = _baselines(stage)
    if scale:
        lines.append(f"  {scale}")
    run = shown(run_dir)
    lines.append(
        f"run folder: {run}/ (summary.json, metrics.jsonl, checkpoints/latest.pt"
        + (", wandb/" if (Path(run_dir) / "wandb").is_dir() else "")
        + ")"
    )
    replay = shown(Path(run_dir) / f"replay_stage{stage}.npz")
    lines += _next(
        [
            (
                "evaluate it",
                command("mode=eval", f"checkpoint={checkpoint}", f"world=stage{stage}", "record=true"),
            ),
            ("watch an episode", command("mode=view", f"view.replay={replay}") + "   # after the eval"),
            (
                "run it live",
                command(
                    "runtime=processes", f"checkpoint={checkpoint}", f"world=stage{stage}", "duration=60"
                ),
            ),
            (
                "train longer",
                command(f"resume={run}", f"total_agent_steps={2 * max(budget, summary['agent_steps'])}"),
            ),
        ]
    )
    return "\n".join(lines)


def after_eval(result: dict[str, Any], out_dir: Path) -> str:
    """The end of an evaluation: where its files are and the next commands."""
    stage, checkpoint = result["stage"], shown(result["checkpoint"])
    saved = [shown(Path(out_dir) / f"eval_stage{stage}.json")]
    saved += [shown(result[key]) for key in ("replay", "recording") if key in result]
    lines = [f"saved {', '.join(saved)}"]
    watch = (
        command("mode=view", f"view.replay={shown(result['replay'])}")
        if "replay" in result
        else command("mode=eval", f"checkpoint={checkpoint}", f"world=stage{stage}", "record=true")
        + "   # to save a replay"
    )
    lines += _next(
        [
            ("watch an episode", watch),
            (
                "run it live",
                command(
                    "runtime=processes", f"checkpoint={checkpoint}", f"world=stage{stage}", "duration=60"
                ),
            ),
        ]
    )
    return "\n".join(lines)


def after_organism(
    summary: dict[str, Any],
    run_dir: Path,
    organism_dir: Path,
    stage: int,
    checkpoint: str | None,
    learn: bool,
) -> str:
    """The end of a live organism run: where its summary and logs are, and the next commands."""
    from agents.organism import npc_alive

    folder = shown(organism_dir)
    lines = []
    npcs = summary.get("npcs", {})
    if npcs and summary.get("world_ticks", 0) is not None:  # None: a shard without the world
        # the table's state is the NPC's process; whether its body lives is the world's
        dead = [str(i) for i, n in npcs.items() if not npc_alive(n)]
        deaths = [f"npc {i} x{n['deaths']}" for i, n in npcs.items() if n.get("deaths", 0)]
        lines.append(
            f"in the world: {len(npcs) - len(dead)} of {len(npcs)} NPCs alive at the end"
            + (f", dead: {', '.join(dead)}" if dead else "")
            + (f"; deaths: {', '.join(deaths)}" if deaths else "")
        )
    lines.append(
        f"saved {folder}/summary.json; per-NPC logs {folder}/logs/npc-<i>.log; "
        f"the run's log {shown(Path(run_dir) / '__main__.log')}"
    )
    commands = [
        ("watch it", command("runtime=processes", f"world=stage{stage}", "duration=60", "viewer=live"))
    ]
    if checkpoint is None:
        commands.append(
            (
                "trained brains",
                command(
                    "runtime=processes",
                    "checkpoint=<run>/checkpoints/latest.pt",
                    f"world=stage{stage}",
                    "duration=60",
                ),
            )
        )
    if not learn:
        commands.append(
            (
                "NPCs learning",
                command(
                    "runtime=processes", f"world=stage{stage}", "duration=60", "runtime.organism.learn=true"
                ),
            )
        )
    return "\n".join(lines + _next(commands))
