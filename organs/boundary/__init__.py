"""The Function Gemma boundary: an NPC's numbers -> one schema-valid JSON situation for the cortex."""

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
