"""BoundaryConfig: which Function Gemma boundary turns numbers into situations (``cortex.boundary``)."""

from __future__ import annotations

from dataclasses import dataclass

#: encoder: the deterministic encoder in-process; model: a function-calling model over HTTP.
BACKENDS = ("encoder", "model")
#: The boundary model the embedded cortex server serves (the deterministic encoder behind the protocol).
EMBEDDED_MODEL = "function-gemma"


@dataclass
class BoundaryConfig:
    """The boundary's backend and, for ``model``, the server, model and limits of its requests."""

    backend: str = "encoder"
    """encoder (the deterministic encoder, default) or model (ask a function-calling model for the
    report_situation call; any invalid answer or an unreachable server falls back to the encoder)."""
    base_url: str | None = None
    """OpenAI-compatible API root of the boundary model, e.g. http://theia:31001/v1 (FunctionGemma under
    vLLM); None: the cortex's server (cortex.base_url, or the embedded one, serving function-gemma)."""
    model: str = EMBEDDED_MODEL
    """Served model name asked for in every request."""
    api_key: str = "nimmerverse"
    """Bearer token sent to the server (vLLM's --api-key; the embedded server ignores it)."""
    timeout_s: float = 2.0
    """Deadline of one request, in seconds (no retries: the encoder stands in at once)."""
    tool_choice: str = "report_situation"
    """report_situation (force the call: vLLM then guides decoding by its schema), auto or required."""
    fit_schema: bool = True
    """Declare report_situation fitted to this NPC's map (sides, row length, coordinates bounded), so
    a guided decoder can only write a situation that passes validation."""
    max_tokens: int = 8192
    """Completion budget of one situation (a 64x64 map's situation is about 3,000 tokens)."""
    temperature: float = 0.0
    """Sampling temperature; 0 keeps the boundary reproducible."""
    concurrency: int = 8
    """Requests in flight at once when one world tick escalates several NPCs."""
    breaker_failures: int = 5
    """Consecutive unreachable or refused requests that open the boundary's circuit breaker."""
    breaker_reset_s: float = 5.0
    """Time an open breaker sends everything to the encoder before one probe goes to the model."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            choices = ", ".join(BACKENDS)
            raise ValueError(f"cortex.boundary.backend={self.backend!r}: must be one of {choices}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"cortex.boundary.base_url={self.base_url!r}: must start with http:// or https://")
        if not self.model:
            raise ValueError("cortex.boundary.model='': must name the served model")
        for name in ("timeout_s", "max_tokens", "concurrency", "breaker_failures", "breaker_reset_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"cortex.boundary.{name}={value!r}: must be > 0")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float) \
                or self.temperature < 0:
            raise ValueError(f"cortex.boundary.temperature={self.temperature!r}: must be >= 0")
        if self.tool_choice not in ("report_situation", "auto", "required"):
            raise ValueError(f"cortex.boundary.tool_choice={self.tool_choice!r}: "
                             "must be report_situation, auto or required")
