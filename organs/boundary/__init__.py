"""The Function Gemma boundary: an NPC's numbers -> one schema-valid JSON situation for the cortex.

Modules: ``schema`` (the situation and its JSON Schema, the report_situation declaration), ``encoder``
(the ``Boundary`` interface and the deterministic encoder), ``numbers`` (the numbers message a model
reads), ``model`` (the function-calling model backend with the encoder as fallback), ``served`` (the
encoder served as model ``function-gemma`` by the embedded cortex server), ``config``
(``cortex.boundary``), ``world_numbers`` (numbers read from the batched world); ``python -m
organs.boundary export`` writes its fine-tuning examples from the decision trails.
"""

from organs.boundary.encoder import DeterministicEncoder, NpcNumbers, SituationEncoder
from organs.boundary.schema import (
    SITUATION_VERSION,
    Situation,
    SituationError,
    decode_call,
    encode_call,
    situation_json_schema,
)

__all__ = [
    "SITUATION_VERSION",
    "DeterministicEncoder",
    "NpcNumbers",
    "Situation",
    "SituationEncoder",
    "SituationError",
    "decode_call",
    "encode_call",
    "situation_json_schema",
]
