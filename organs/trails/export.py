"""Fine-tuning examples from the decision trails (the seed's "decision trails from phoebe -> training data").

``python -m organs.trails export --store trails.sqlite --out sft.jsonl`` writes one JSON object a line in
TRL's conversational format with tools (``SFTTrainer`` takes ``messages`` and ``tools`` columns and
renders them with the model's own chat template: FunctionGemma's template writes the developer turn's
``<start_function_declaration>`` blocks and the model turn's ``<start_function_call>``)::

    {"kind": "boundary", "id": "<trail event id>",
     "messages": [{"role": "developer", "content": <the boundary's prompt>},
                  {"role": "user", "content": <the NPC's numbers message>},
                  {"role": "assistant", "tool_calls": [{"type": "function", "function":
                      {"name": "report_situation", "arguments": {<the situation>}}}]}],
     "tools": [<report_situation, fitted to the NPC's map, as the model backend declares it>]}

Selection rule, per escalation event (gate decisions never make examples):

- **boundary** (numbers -> situation, for Function Gemma): the event carries its numbers and a valid
  situation, and that situation is the one the deterministic encoder writes from those numbers (a model's
  situation that differs is the model's error, not a label). With ``--outcome paid`` only those that
  paid off (below).
- **cortex** (situation -> plan, for nyx): the cortex planned, the plan is a valid tool call, and the
  escalation **paid off**: its outcome arrived and the NPC earned reward > 0 or opened a lock over the
  K ticks after it, and did not die. The system turn is the cortex client's prompt, the user turn the
  situation call, the assistant turn the plan call, the tools all the cortex's tools.

``--stage``, ``--run``, ``--since`` and ``--until`` (ISO dates, UTC when no zone is given) narrow the
events. Every example is validated as it is built; events that make none are counted by reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from nervous.messages import TrailOutcome
from organs.boundary.encoder import DeterministicEncoder
from organs.boundary.model import SYSTEM_PROMPT as BOUNDARY_PROMPT
from organs.boundary.numbers import decode_numbers
from organs.boundary.schema import (
    SITUATION_FUNCTION,
    SituationError,
    decode_call,
    report_situation_declaration_json,
)
from organs.cortex.client import SYSTEM_PROMPT as CORTEX_PROMPT
from organs.cortex.tools import TOOL_DECLARATIONS, TOOLS, InvalidAnswer, parse_call, tool_name
from organs.trails.store import TrailRecord, TrailStore

#: What an example teaches: the boundary (Function Gemma) or the cortex (nyx).
KINDS = ("boundary", "cortex")
#: Which boundary examples to keep: every valid one, or only those whose escalation paid off.
OUTCOME_FILTERS = ("any", "paid")
#: The cortex's tool declarations, encoded once (embedded in every cortex example).
_CORTEX_TOOLS = msgspec.Raw(msgspec.json.encode(TOOL_DECLARATIONS))


class NoExample(ValueError):
    """An event that makes no example of a kind; ``reason`` is counted."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class ExportCounts:
    """What an export wrote and what it left out, by reason."""

    boundary: int = 0
    cortex: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def examples(self) -> int:
        """Examples written."""
        return self.boundary + self.cortex

    def summary(self, out: str) -> str:
        """One line for the terminal."""
        line = (f"wrote {self.examples} fine-tuning examples ({self.boundary} boundary, "
                f"{self.cortex} cortex) to {out}")
        if self.skipped:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
            line += f"; events left out: {reasons}"
        return line


def paid_off(outcome: TrailOutcome | None) -> bool:
    """An escalation paid off: its outcome is known, reward > 0 or a lock opened, and the NPC lived."""
    return outcome is not None and (outcome.reward > 0 or outcome.lock_opened) and not outcome.died


def _tool_call(name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def boundary_example(record: TrailRecord, encoder: DeterministicEncoder | None = None) -> dict[str, Any]:
    """The numbers -> report_situation example of one escalation; NoExample with the reason if none."""
    event = record.event
    if not event.numbers:
        raise NoExample("boundary_no_numbers")
    try:
        numbers = decode_numbers(event.numbers)
    except ValueError:
        raise NoExample("boundary_bad_numbers") from None
    try:
        situation = decode_call(event.situation)
    except SituationError:
        raise NoExample("boundary_bad_situation") from None
    if situation != (encoder or DeterministicEncoder()).encode(numbers):
        raise NoExample("boundary_model_disagrees")
    height, width = numbers.seen.shape
    return {
        "kind": "boundary", "id": event.id,
        "messages": [
            {"role": "developer", "content": BOUNDARY_PROMPT},
            {"role": "user", "content": event.numbers},
            {"role": "assistant",
             "tool_calls": [_tool_call(SITUATION_FUNCTION, msgspec.to_builtins(situation))]},
        ],
        "tools": [msgspec.Raw(report_situation_declaration_json(width, height))],
    }  # fmt: skip


def _plan_call(response: str) -> tuple[str, Any]:
    """(tool name, typed call) of a recorded answer: ``{"name", "arguments"}``, or bare arguments (older
    trails), whose tool is the one whose arguments they are."""
    try:
        answer = json.loads(response)
    except json.JSONDecodeError:
        raise NoExample("cortex_bad_response") from None
    if isinstance(answer, dict) and set(answer) == {"name", "arguments"}:
        candidates = [str(answer["name"])]
        answer = answer["arguments"]
    else:
        candidates = list(TOOLS)
    arguments = json.dumps(answer)
    for name in candidates:
        try:
            return name, parse_call(name, arguments)
        except InvalidAnswer:
            continue
    raise NoExample("cortex_bad_response")


def cortex_example(record: TrailRecord) -> dict[str, Any]:
    """The situation -> plan example of one escalation that paid off; NoExample with the reason if none."""
    event = record.event
    if event.cortex_outcome != "planned" or not event.cortex_response:
        raise NoExample("cortex_not_planned")
    if not paid_off(record.outcome):
        raise NoExample("cortex_no_outcome" if record.outcome is None else "cortex_not_paid")
    try:
        decode_call(event.situation)
    except SituationError:
        raise NoExample("cortex_bad_situation") from None
    name, call = _plan_call(event.cortex_response)
    assert tool_name(call) == name
    return {
        "kind": "cortex", "id": event.id,
        "messages": [
            {"role": "system", "content": CORTEX_PROMPT},
            {"role": "user", "content": event.situation},
            {"role": "assistant", "tool_calls": [_tool_call(name, msgspec.to_builtins(call))]},
        ],
        "tools": _CORTEX_TOOLS,
    }  # fmt: skip


def examples(records: Iterable[TrailRecord], kinds: Iterable[str] = KINDS, outcome: str = "any",
             counts: ExportCounts | None = None) -> Iterator[dict[str, Any]]:
    """The examples of the records (escalations), kinds in ``KINDS`` order; counted into counts."""
    wanted = [k for k in KINDS if k in set(kinds)]
    if outcome not in OUTCOME_FILTERS:
        raise ValueError(f"--outcome={outcome!r}: must be one of {', '.join(OUTCOME_FILTERS)}")
    counts = counts if counts is not None else ExportCounts()
    encoder = DeterministicEncoder()
    for record in records:
        if record.event.kind != "escalation":
            continue
        for kind in wanted:
            try:
                if kind == "boundary":
                    if outcome == "paid" and not paid_off(record.outcome):
                        raise NoExample("boundary_not_paid")
                    example = boundary_example(record, encoder)
                else:
                    example = cortex_example(record)
            except NoExample as skip:
                counts.skipped[skip.reason] += 1
                continue
            setattr(counts, kind, getattr(counts, kind) + 1)
            yield example


def check_example(example: dict[str, Any]) -> None:
    """Raise ValueError when an example read back is not one this module writes (its call validated)."""
    messages = example["messages"]
    if [m["role"] for m in messages][1:] != ["user", "assistant"]:
        raise ValueError(f"example {example.get('id')}: turns {[m['role'] for m in messages]}")
    [call] = messages[-1]["tool_calls"]
    name, arguments = call["function"]["name"], json.dumps(call["function"]["arguments"])
    if example["kind"] == "boundary":
        decode_numbers(messages[1]["content"])
        if name != SITUATION_FUNCTION:
            raise ValueError(f"example {example['id']}: calls {name!r}")
        decode_call('{"name":"report_situation","arguments":' + arguments + "}")
    else:
        decode_call(messages[1]["content"])
        parse_call(name, arguments)


def parse_date(text: str, flag: str) -> float:
    """Unix seconds of an ISO date or date-time (UTC when no zone is given); ValueError naming the flag."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag}={text!r}: not an ISO date (e.g. 2026-11-25 or 2026-11-25T18:00)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def export(store: TrailStore, out: str | Path, kinds: Iterable[str] = KINDS, outcome: str = "any",
           run: str | None = None, since: float | None = None, until: float | None = None,
           stage: int | None = None) -> ExportCounts:
    """Write the store's examples to a JSONL file (replaced whole); what was written and left out."""
    counts = ExportCounts()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    records = store.records(kind="escalation", run=run, since=since, until=until, stage=stage)
    with partial.open("wb") as file:
        for example in examples(records, kinds, outcome, counts):
            file.write(msgspec.json.encode(example) + b"\n")
    partial.replace(path)
    return counts
