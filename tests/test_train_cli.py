"""`python -m train` as a user runs it: a tiny training run, resume, eval with a replay, bad input."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from world.replay import load_replay

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logger.mode=disabled", "logger.progress=false"]


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder of a tiny training run."""
    tmp = tmp_path_factory.mktemp("run")
    result = run_train("+experiment=quick", f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "run"


@pytest.mark.slow
def test_tiny_training_run_writes_metrics_checkpoint_and_summary(trained):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["agent_steps"] == 2048 and summary["updates"] == 4 and summary["stage"] == 0
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for prefix in (
        "charts/SPS",
        "charts/stage",
        "charts/success",
        "losses/approx_kl",
        "losses/clipfrac",
        "losses/explained_variance",
        "perf/rollout_s",
    ):
        assert prefix in rows[-1]
    assert (trained / "checkpoints" / "latest.pt").is_file()
    assert not list((trained / "checkpoints").glob("*.tmp"))
    assert (trained / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_resume_continues_the_run_in_its_folder(trained, tmp_path):
    result = run_train(
        f"resume={trained}", "total_agent_steps=4096", *QUIET, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "resumed" in result.stderr
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["agent_steps"] == 4096 and summary["updates"] == 8


@pytest.mark.slow
def test_eval_prints_a_table_saves_json_and_a_replay(trained, tmp_path):
    out = tmp_path / "eval"
    result = run_train(
        "mode=eval",
        f"checkpoint={trained / 'checkpoints' / 'latest.pt'}",
        "world=stage0",
        "episodes=8",
        "record=true",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout and "heuristic" in result.stdout
    saved = json.loads((trained / "eval_stage0.json").read_text())  # beside the checkpoint it evaluated
    assert saved["stage"] == 0 and saved["results"]["brain"]["episodes"] >= 8
    assert not out.exists()  # the eval job's own folder held only Hydra's files
    replay = load_replay(trained / "replay_stage0.npz")
    assert replay.stage == 0 and len(replay) >= 2 and "actions" in replay.arrays
    assert replay.arrays["npc_y"].shape[1] == 4


def next_commands(stdout: str) -> dict[str, list[str]]:
    """The commands a run printed under `next:`, by label, as argument lists after `python -m train`."""
    lines = stdout.split("\nnext:\n", 1)[1].splitlines()
    commands = {}
    for line in lines:
        label, _, command = line.strip().partition(": ")
        commands[label] = shlex.split(command.split("   #")[0])[3:]
    return commands


@pytest.mark.slow
def test_a_run_ends_with_a_summary_and_next_commands_that_work_as_printed(tmp_path):
    """Train as the README says (wandb offline, progress bar), then run what it says to run next."""
    env = os.environ | {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    env.pop("WANDB_SILENT", None)
    env.pop("PYGAME_HIDE_SUPPORT_PROMPT", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "train", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )

    trained = run(
        "+experiment=quick", "total_agent_steps=1500", "logger.mode=offline", "logger.progress=true"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = trained.stdout + trained.stderr
    assert "wandb:" not in out and "Weave" not in out  # no library banners or adverts
    assert "1.54k/1.54k" in trained.stderr.split("\r")[-1] and "100%" in trained.stderr.split("\r")[-1]
    assert (
        "stage 0 (meadow), rolling success" in trained.stdout and "heuristic succeeds 0.960" in trained.stdout
    )
    run_dir = next((tmp_path / "outputs").glob("*/*"))
    assert f"run folder: {run_dir.relative_to(tmp_path)}/" in trained.stdout
    steps = next_commands(trained.stdout)
    assert set(steps) == {"evaluate it", "watch an episode", "run it live", "train longer"}

    evaluated = run(*steps["evaluate it"], "episodes=4", "world.max_steps=20")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (run_dir / "eval_stage0.json").is_file() and (run_dir / "replay_stage0.gif").is_file()
    assert "pygame" not in evaluated.stdout + evaluated.stderr and "wandb:" not in evaluated.stderr
    assert next_commands(evaluated.stdout)["watch an episode"] == steps["watch an episode"]

    shot = tmp_path / "shot.png"
    viewed = run(*steps["watch an episode"], "view.frames=3", f"view.screenshot={shot}")
    assert viewed.returncode == 0 and shot.is_file(), viewed.stderr[-3000:]
    assert "pygame" not in viewed.stdout + viewed.stderr
    assert [p.name for p in (tmp_path / "outputs").glob("*/*")] == [run_dir.name]  # eval and view: no folder

    longer = run(*steps["train longer"], "logger.mode=disabled")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["agent_steps"] >= 3000


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, list[str]]:
    """Call `python -m train`'s main in-process; return (exit status, stderr lines)."""
    from train.__main__ import main

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["train", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["ppo.lr=3"], "ppo.lr"),
        (["ppo.num_envs=abc"], "ppo.num_envs"),
        (["world=stage9"], "world=stage9: no such world config; choose one of stage0, stage1, stage2"),
        (["brain=nope"], "brain=nope: no such brain config; choose one of per_npc, shared"),
        (["+experiment=nope"], "experiment=nope: no such experiment config; choose one of benchmark"),
        (["+foo=bar"], "foo: no such config field"),
        (["+ppo.foo=1"], "ppo.foo: no such config field"),
        (["world.n_food=3"], "world.n_food"),
        (["world=stage0", "world.n_food=-1"], "world.n_food"),
        (["world=stage0", "world.colour=red"], "colour"),
        (["resume=/no/such/run"], "resume="),
        (["mode=eval"], "checkpoint"),
        (["mode=eval", "checkpoint=/no/such.pt"], "no such file"),
        (["mode=fly"], "mode="),
        (["cortex.vision_gate=maybe"], "cortex.vision_gate='maybe': must be one of closed, open, governed"),
        (["cortex.vision_weights=/no/such.pt"], "cortex.vision_weights='/no/such.pt': no such file"),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_exit_2(monkeypatch, capsys, tmp_path, args, needle):
    code, lines = run_main(monkeypatch, capsys, *args, *QUIET, f"hydra.run.dir={tmp_path / 'x'}")
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines


@pytest.mark.parametrize("group", ["world", "brain", "ppo", "curriculum", "nervous", "logger", "runtime"])
def test_an_unknown_option_of_any_group_lists_the_options_that_exist(monkeypatch, capsys, tmp_path, group):
    code, lines = run_main(monkeypatch, capsys, f"{group}=nope", *QUIET, f"hydra.run.dir={tmp_path / 'x'}")
    shipped = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == f"error: {group}=nope: no such {group} config; choose one of {', '.join(shipped)}"


@pytest.mark.parametrize(
    "args", [["resume=/no/such/run"], ["mode=eval", "checkpoint=/no/such.pt"], ["total_agent_steps=0"]]
)
def test_a_run_refused_at_start_leaves_no_folder_behind(monkeypatch, capsys, tmp_path, args):
    monkeypatch.chdir(tmp_path)
    code, lines = run_main(monkeypatch, capsys, *args, *QUIET)  # Hydra's default outputs/<date>/<time>
    assert code == 2 and lines[0].startswith("error: ")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_run_leaves_an_existing_folder_s_files_alone(monkeypatch, capsys, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    code, _ = run_main(monkeypatch, capsys, "resume=/no/such/run", *QUIET, f"hydra.run.dir={tmp_path / 'x'}")
    assert code == 2 and (tmp_path / "x" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_bad_input_from_the_shell_is_one_line_and_exit_2(tmp_path):
    result = run_train("ppo.num_envs=abc", f"hydra.run.dir={tmp_path / 'x'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Error merging override ppo.num_envs=abc: Value 'abc' of type 'str' could not be converted to "
        "Integer"
    ]


@pytest.mark.slow
def test_incompatible_checkpoints_and_resume_changes_are_refused(monkeypatch, capsys, trained, tmp_path):
    checkpoint = trained / "checkpoints" / "latest.pt"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases = [
        (["mode=eval", f"checkpoint={checkpoint}", "world=stage3"], "only 4 brains"),  # 16 NPC slots
        (["mode=eval", f"checkpoint={garbage}"], "not a readable checkpoint"),
        ([f"resume={trained}", "world=stage2"], "cannot change in a resumed run"),
        ([f"resume={tmp_path}"], "holds no checkpoints/latest.pt"),
    ]
    for args, needle in cases:
        code, lines = run_main(monkeypatch, capsys, *args, *QUIET, f"hydra.run.dir={tmp_path / 'x'}")
        assert code == 2 and len(lines) == 1 and needle in lines[0], (args, lines)
