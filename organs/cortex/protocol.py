"""The OpenAI chat-completions wire protocol, as far as the cortex speaks it (vLLM's protocol.py, in msgspec).

Requests are decoded and validated here (unknown fields are ignored, as OpenAI servers do);
``ProtocolError`` carries an OpenAI-shaped error (HTTP status, message, type, param, code) that the
server turns into ``{"error": {...}}`` and the in-process caller can read as is.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

import msgspec


class ProtocolError(Exception):
    """An OpenAI-shaped error: HTTP status, message, type, the offending param and a code."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        super().__init__(f"{status} {type}: {message}" + (f" (param {param})" if param else ""))

    def body(self) -> ErrorResponse:
        """The error as OpenAI's response body."""
        return ErrorResponse(
            error=ErrorInfo(message=self.message, type=self.type, param=self.param, code=self.code)
        )


# ==========================================================================================
# requests
# ==========================================================================================
class FunctionCall(msgspec.Struct):
    """A function's name and its arguments as a JSON string."""

    name: str
    arguments: str


class ToolCall(msgspec.Struct):
    """One tool call of an assistant message."""

    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class ChatMessage(msgspec.Struct, omit_defaults=True):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(msgspec.Struct, omit_defaults=True):
    """A function the model may call: name, description and JSON Schema parameters."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolDefinition(msgspec.Struct):
    """A tool declaration: only functions exist."""

    function: FunctionDefinition
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct):
    """The function a named tool_choice forces."""

    name: str


class NamedToolChoice(msgspec.Struct):
    """``{"type": "function", "function": {"name": ...}}``: force one tool."""

    function: NamedFunction
    type: Literal["function"] = "function"


class ChatCompletionRequest(msgspec.Struct, omit_defaults=True):
    """``POST /v1/chat/completions`` body (the fields the cortex reads; others are ignored)."""

    model: str
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1)] = 1
    stream: bool = False
    priority: int = 0
    """vLLM's extension: with --scheduling-policy priority, lower values are served first."""
    user: str | None = None


# ==========================================================================================
# responses
# ==========================================================================================
class ResponseMessage(msgspec.Struct):
    """The assistant's answer."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)


class Choice(msgspec.Struct):
    """One choice of a completion."""

    index: int
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class Usage(msgspec.Struct):
    """Token counts (the planner counts bytes / 4, roughly)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletionResponse(msgspec.Struct):
    """A chat completion."""

    model: str
    choices: list[Choice]
    usage: Usage = msgspec.field(default_factory=Usage)
    id: str = msgspec.field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    object: Literal["chat.completion"] = "chat.completion"
    created: int = msgspec.field(default_factory=lambda: int(time.time()))


class ModelCard(msgspec.Struct):
    """One served model."""

    id: str
    object: Literal["model"] = "model"
    created: int = msgspec.field(default_factory=lambda: int(time.time()))
    owned_by: str = "nimmerverse"


class ModelList(msgspec.Struct):
    """``GET /v1/models``."""

    data: list[ModelCard]
    object: Literal["list"] = "list"


class ErrorInfo(msgspec.Struct):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(msgspec.Struct):
    """``{"error": {...}}``."""

    error: ErrorInfo


_request_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_encoder = msgspec.json.Encoder()


def decode_request(body: bytes) -> ChatCompletionRequest:
    """A validated chat-completions request; ProtocolError (400) naming the param otherwise."""
    try:
        return _request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        reason, _, where = str(exc).partition(" - at `")
        param = where.rstrip("`").removeprefix("$.") or None
        raise ProtocolError(400, f"invalid request: {reason}", param=param) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(400, f"malformed JSON body: {exc}", code="malformed_json") from None


def encode(message: msgspec.Struct) -> bytes:
    """The JSON bytes of a protocol object."""
    return _encoder.encode(message)
