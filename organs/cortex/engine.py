"""The ``nyx`` engine: a chat-completions request in, a response with one tool call out (no HTTP).

The HTTP server's routes call it, and so can batched training in-process, through the same
request/response schema. Requests it cannot serve raise ``ProtocolError`` (OpenAI-shaped).
"""

from __future__ import annotations

import uuid

from organs.boundary.schema import Situation, SituationError, decode_call
from organs.cortex.planner import NoPlan, Planner
from organs.cortex.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    FunctionCall,
    ModelCard,
    ModelList,
    NamedToolChoice,
    ProtocolError,
    ResponseMessage,
    ToolCall,
    Usage,
)
from organs.cortex.tools import TOOLS, encode_arguments, tool_name

MODEL_NAME = "nyx"


class NyxEngine:
    """The planner served as model ``nyx``."""

    def __init__(self, planner: Planner | None = None, model: str = MODEL_NAME) -> None:
        self.planner = planner or Planner()
        self.model = model

    def models(self) -> ModelList:
        """The served models."""
        return ModelList(data=[ModelCard(id=self.model)])

    def complete(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        """The answer to one request: one tool call; ProtocolError when the request cannot be served."""
        if request.model != self.model:
            raise ProtocolError(
                404,
                f"The model `{request.model}` does not exist.",
                type="NotFoundError",
                param="model",
                code="model_not_found",
            )
        if request.stream:
            raise ProtocolError(400, "streaming is not supported by the planner", param="stream")
        offered = self._offered_tools(request)
        forced = self._forced_tool(request, offered)
        situation = self._situation(request)
        try:
            call = self.planner.plan(situation, allowed=offered, forced=forced)
        except NoPlan as exc:
            raise ProtocolError(400, f"tool_choice {forced!r}: {exc}", param="tool_choice") from None
        arguments = encode_arguments(call)
        prompt_tokens = sum(len(m.content or "") for m in request.messages) // 4
        completion_tokens = max(1, len(arguments) // 4)
        tool_call = ToolCall(
            id=f"call_{uuid.uuid4().hex[:24]}",
            function=FunctionCall(name=tool_name(call), arguments=arguments),
        )
        return ChatCompletionResponse(
            model=self.model,
            choices=[
                Choice(index=0, message=ResponseMessage(tool_calls=[tool_call]), finish_reason="tool_calls")
            ],
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
        )

    @staticmethod
    def _offered_tools(request: ChatCompletionRequest) -> set[str]:
        if not request.tools:
            raise ProtocolError(
                400,
                f"the planner answers only with tool calls: declare its tools ({', '.join(TOOLS)})",
                param="tools",
            )
        offered = set()
        for i, tool in enumerate(request.tools):
            name = tool.function.name
            if name not in TOOLS:
                raise ProtocolError(
                    400,
                    f"tool {name!r} cannot be served by the planner; it serves {', '.join(TOOLS)}",
                    param=f"tools[{i}].function.name",
                    code="unsupported_tool",
                )
            offered.add(name)
        return offered

    @staticmethod
    def _forced_tool(request: ChatCompletionRequest, offered: set[str]) -> str | None:
        choice = request.tool_choice
        if choice == "none":
            raise ProtocolError(
                400, "tool_choice 'none': the planner answers only with tool calls", param="tool_choice"
            )
        if isinstance(choice, NamedToolChoice):
            if choice.function.name not in offered:
                raise ProtocolError(
                    400,
                    f"tool_choice names {choice.function.name!r}, which is not in tools",
                    param="tool_choice.function.name",
                )
            return choice.function.name
        return None

    @staticmethod
    def _situation(request: ChatCompletionRequest) -> Situation:
        for index in range(len(request.messages) - 1, -1, -1):
            message = request.messages[index]
            if message.role == "user":
                try:
                    return decode_call(message.content or "")
                except SituationError as exc:
                    raise ProtocolError(
                        400,
                        f"the last user message is not a report_situation call: {exc.field}: {exc.reason}",
                        param=f"messages[{index}].content",
                        code="bad_situation",
                    ) from None
        raise ProtocolError(400, "no user message holding a report_situation call", param="messages")
