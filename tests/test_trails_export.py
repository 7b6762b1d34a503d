"""Fine-tuning examples from real decision trails: the escalation path records, the CLI exports, every line
read back parses into a schema-valid call, and the selection rule leaves out what it says it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from nervous.messages import TrailEvent, TrailKind, TrailOutcome
from organs.boundary.numbers import decode_numbers
from organs.boundary.schema import decode_call
from organs.trails.export import check_example, export, paid_off
from organs.trails.recorder import TrailRecorder
from organs.trails.store import open_store
from organs.trails.writer import TrailWriter
from tests.stage4_trails import record_stage4

ROOT = Path(__file__).resolve().parents[1]
#: The fixture runs 400 stage-4 ticks and the tests the CLI as subprocesses: about 40 s in all.
pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def trails(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-4 run's trails: heuristic governor, the nyx engine, 400 ticks of 4 envs, outcomes 10 on."""
    path = tmp_path_factory.mktemp("trails") / "trails.sqlite"
    store = open_store(str(path))
    writer = TrailWriter(store)
    record_stage4(TrailRecorder(writer.write_many, "run-sft", outcome_ticks=10))
    writer.close()
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_cli_exports_every_escalation_and_every_model_turn_is_a_schema_valid_call(
    trails: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sft.jsonl"
    done = cli("organs.trails", "export", "--store", str(trails), "--out", str(out))
    assert done.returncode == 0, done.stderr
    with open_store(str(trails), create=False) as store:
        escalations = list(store.records(kind="escalation"))
    paid = [r for r in escalations if paid_off(r.outcome)]
    assert len(escalations) > 0 and 0 < len(paid) < len(escalations)  # the rule has something to leave out
    examples = read(out)
    boundary = [e for e in examples if e["kind"] == "boundary"]
    cortex = [e for e in examples if e["kind"] == "cortex"]
    assert len(boundary) == len(escalations) and len(cortex) == len(paid)  # the encoder wrote every situation
    assert f"wrote {len(examples)} fine-tuning examples ({len(boundary)} boundary, {len(cortex)} cortex)" in (
        done.stdout)
    for example in examples:
        check_example(example)
        call = example["messages"][-1]["tool_calls"][0]["function"]
        [declared] = [t for t in example["tools"] if t["function"]["name"] == call["name"]]
        jsonschema.validate(call["arguments"], declared["function"]["parameters"])  # as the model is prompted
    situation = decode_call(json.dumps({"name": "report_situation",
                                        "arguments": boundary[0]["messages"][-1]["tool_calls"][0]["function"][
                                            "arguments"]}))
    numbers = decode_numbers(boundary[0]["messages"][1]["content"])
    assert (situation.npc, situation.tick) == (numbers.npc, numbers.tick)
    assert {e["messages"][0]["role"] for e in boundary} == {"developer"}  # FunctionGemma's first turn
    assert {e["id"] for e in cortex} == {r.event.id for r in paid}


def test_filters_narrow_the_export_and_the_boundary_command_writes_boundary_examples(
    trails: Path, tmp_path: Path
) -> None:
    out = tmp_path / "paid.jsonl"
    done = cli("organs.boundary", "export", "--store", str(trails), "--out", str(out), "--outcome", "paid")
    assert done.returncode == 0, done.stderr
    with open_store(str(trails), create=False) as store:
        paid = [r for r in store.records(kind="escalation") if paid_off(r.outcome)]
    examples = read(out)
    assert {e["kind"] for e in examples} == {"boundary"} and len(examples) == len(paid)
    assert "boundary_not_paid" in done.stdout
    later = cli("organs.trails", "export", "--store", str(trails), "--out", str(out), "--since", "2999-01-01")
    assert later.returncode == 0 and read(out) == [] and "wrote 0 fine-tuning examples" in later.stdout
    other = cli("organs.trails", "export", "--store", str(trails), "--out", str(out), "--run", "another-run")
    assert other.returncode == 0 and read(out) == []
    stage3 = cli("organs.trails", "export", "--store", str(trails), "--out", str(out), "--stage", "3")
    assert stage3.returncode == 0 and read(out) == []  # the run was on stage 4
    stage4 = cli("organs.trails", "export", "--store", str(trails), "--out", str(out), "--stage", "4",
                 "--kinds", "cortex")
    assert stage4.returncode == 0 and [e["kind"] for e in read(out)] == ["cortex"] * len(paid)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "error: --since='yesterday': not an ISO date"),
        (["--outcome", "great"], "invalid choice: 'great'"),
    ],
)
def test_bad_export_arguments_get_one_error_line_and_exit_2(trails: Path, tmp_path: Path, args: list[str],
                                                             message: str) -> None:
    done = cli("organs.trails", "export", "--store", str(trails), "--out", str(tmp_path / "x.jsonl"), *args)
    assert done.returncode == 2 and message in done.stderr and not (tmp_path / "x.jsonl").exists()


def test_a_missing_store_and_a_wrong_subcommand_are_refused(tmp_path: Path) -> None:
    done = cli("organs.trails", "export", "--store", str(tmp_path / "none.sqlite"), "--out", "x.jsonl")
    assert done.returncode == 2 and done.stderr.startswith("error: trail store")
    assert "no such file" in done.stderr
    wrong = cli("organs.boundary", "train")
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: usage: python -m organs.boundary export")
    helped = cli("organs.boundary", "export", "--help")  # its own name in the usage, not the trails'
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m organs.boundary export")


def test_a_model_situation_that_differs_from_the_encoders_and_rows_without_numbers_make_no_boundary_example(
    trails: Path, tmp_path: Path
) -> None:
    with open_store(str(trails), create=False) as source:
        [good] = [r for r in source.records(kind="escalation") if paid_off(r.outcome)][:1]
    event = good.event
    wrong = json.loads(event.situation)
    wrong["arguments"]["body"]["lifeforce"] = (wrong["arguments"]["body"]["lifeforce"] + 1) % 100
    fields = {f: getattr(event, f) for f in event.__struct_fields__ if f not in ("type", "version")}
    disagreeing = TrailEvent(**(fields | {"id": "x:1", "situation": json.dumps(wrong)}))
    old = TrailEvent(**(fields | {"id": "x:2", "numbers": ""}))
    gate = TrailEvent(id="x:3", run="r", env="dev", npc=0, tick=1, kind=TrailKind.GATE, region="math",
                      gate_open=True)
    store = open_store(str(tmp_path / "t.sqlite"))
    store.insert([disagreeing, old, gate,
                  TrailOutcome(id="x:2", npc=0, tick=9, after_ticks=8, reward=0.5)])
    counts = export(store, tmp_path / "sft.jsonl")
    store.close()
    examples = read(tmp_path / "sft.jsonl")
    assert [(e["kind"], e["id"]) for e in examples] == [("cortex", "x:2")]  # its plan paid off
    assert counts.skipped == {"boundary_model_disagrees": 1, "boundary_no_numbers": 1, "cortex_no_outcome": 1}
