"""CortexConfig: how NPCs reach the cortex (embedded planner server or vLLM), as one config group."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from organs.boundary.config import BoundaryConfig
from organs.cortex.tools import TOOLS

#: How the in-process runtime reaches the cortex: not at all, the planner engine in-process, or over HTTP.
BACKENDS = ("none", "engine", "http")
#: Whether the planner looks through the NPC's vision organ first (``CortexConfig.vision_gate``).
VISION_GATES = ("closed", "open", "governed")


@dataclass
class CortexConfig:
    """Whether and how NPCs escalate to the cortex: the backend, the client's target, limits and failures."""

    backend: str = "none"
    """In-process runtime: none (no escalations), engine (the nyx planner called in-process, fast:
    training; conf/cortex/default.yaml makes it python -m train's default, while programmatic runs keep none)
    or http (the real openai client against base_url or the embedded server: eval, benchmarks)."""
    outcome_ticks: int = 40
    """World ticks after an escalation whose reward is recorded as its outcome."""
    base_url: str | None = None
    """OpenAI-compatible API root, e.g. http://theia:31000/v1 (vLLM); None starts the embedded server."""
    model: str = "nyx"
    """Served model name asked for in every request."""
    api_key: str = "nimmerverse"
    """Bearer token sent to the server (vLLM's --api-key; the embedded server ignores it)."""
    timeout_s: float = 2.0
    """Deadline of one HTTP attempt, in seconds."""
    retries: int = 2
    """Extra attempts after a failed one (timeouts, connection errors, 5xx), with jittered backoff."""
    backoff_s: float = 0.05
    """Base of the exponential backoff between attempts; each wait is drawn from [0, base * 2**attempt]."""
    concurrency: int = 16
    """Requests in flight at once; the rest wait in the client's priority queue."""
    queue_size: int = 1024
    """Requests waiting at most; a full queue rejects new ones at once."""
    deadline_s: float = 1.0
    """Default time a request may wait in the queue before it is dropped as stale."""
    breaker_failures: int = 5
    """Consecutive failures that open the circuit breaker."""
    breaker_reset_s: float = 5.0
    """Time an open breaker waits before letting one half-open probe through."""
    priority_scheduling: bool = False
    """Also send vLLM's own `priority` field (needs `vllm serve --scheduling-policy priority`)."""
    tool_choice: str = "auto"
    """`auto` (the model picks a tool) or `required`, or the name of one tool to force."""
    max_tokens: int = 256
    """Completion budget of one answer."""
    temperature: float = 0.0
    """Sampling temperature; 0 keeps an LLM's plans reproducible."""
    max_plan_steps: int = 64
    """Actions a plan may take before the follower gives up and the brain resumes."""
    vision_gate: str = "governed"
    """The NPCs' vision organ gate: closed (never asked), open (asked before each escalation: the 15x15
    window of the rendered world around the NPC is merged into its seen map, so plans see beyond its view;
    each call costs nervous.lifeforce.per_organ_call), governed (the default: asked only for NPCs whose gate
    an OrganGate message opened, CortexLink.organ_gate - the governor's rule, governor.organ_gates; closed
    until then). With backend none nothing looks and no organ is made."""
    from_stage: int = 0
    """The first curriculum stage whose NPCs escalate (0: every stage). Below it the link asks nothing and
    keeps no seen maps, so it costs nothing: conf/cortex/default.yaml sets 4 (the locks), since on stages
    0-3 the in-process link made the default run's rollouts about 16 times slower for little use."""
    vision_weights: str = ""
    """Vision organ weight file ('': the shipped weights)."""
    vision_deadline_s: float = 0.25
    """Live organism: seconds one look over the bus may take (the world tick waits for it); a look that
    gets no reply in time is counted as refused and the escalation goes on with what the NPC saw."""
    boundary: BoundaryConfig = field(default_factory=BoundaryConfig)
    """The Function Gemma boundary that writes each escalation's situation: the deterministic encoder
    (default) or a function-calling model (cortex.boundary.backend=model), with the encoder as fallback."""

    def __post_init__(self) -> None:
        if isinstance(self.boundary, dict):
            self.boundary = BoundaryConfig(**self.boundary)
        positive = (
            "timeout_s",
            "concurrency",
            "queue_size",
            "deadline_s",
            "breaker_failures",
            "breaker_reset_s",
            "max_tokens",
            "max_plan_steps",
            "outcome_ticks",
            "vision_deadline_s",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"cortex.{name}={value!r}: must be > 0")
        for name in ("retries", "backoff_s", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"cortex.{name}={value!r}: must be >= 0")
        stage = self.from_stage
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 5:
            raise ValueError(f"cortex.from_stage={self.from_stage!r}: must be a stage, 0..5")
        if self.vision_gate not in VISION_GATES:
            choices = ", ".join(VISION_GATES)
            raise ValueError(f"cortex.vision_gate={self.vision_gate!r}: must be one of {choices}")
        if self.vision_weights and not Path(self.vision_weights).is_file():
            raise ValueError(f"cortex.vision_weights={self.vision_weights!r}: no such file")
        if self.backend not in BACKENDS:
            raise ValueError(f"cortex.backend={self.backend!r}: must be one of {', '.join(BACKENDS)}")
        if isinstance(self.outcome_ticks, bool) or not isinstance(self.outcome_ticks, int):
            raise ValueError(f"cortex.outcome_ticks={self.outcome_ticks!r}: must be an integer > 0")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"cortex.base_url={self.base_url!r}: must start with http:// or https://")
        if not self.model:
            raise ValueError("cortex.model='': must name the served model")
        if self.tool_choice not in ("auto", "required") and self.tool_choice not in TOOLS:
            raise ValueError(
                f"cortex.tool_choice={self.tool_choice!r}: must be auto, required or one of {sorted(TOOLS)}"
            )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of all fields, in order."""
        return tuple(f.name for f in fields(cls))
