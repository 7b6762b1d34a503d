"""The deterministic encoder served as a function-calling model (``function-gemma`` on the embedded server).

``BoundaryEngine`` answers a chat-completions request that declares ``report_situation`` by reading the
last user message as a numbers message (``organs.boundary.numbers``), running the deterministic encoder
and returning its situation as the one tool call, exactly as a function-calling model under vLLM
would. So ``cortex.boundary.backend=model`` runs end to end over real HTTP with no model weights, and
pointing ``cortex.boundary.base_url`` at FunctionGemma swaps in the model with no code change.
"""

from __future__ import annotations

import uuid

import msgspec

from organs.boundary.config import EMBEDDED_MODEL
from organs.boundary.encoder import DeterministicEncoder
from organs.boundary.numbers import decode_numbers
from organs.boundary.schema import SITUATION_FUNCTION
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


class BoundaryEngine:
    """The deterministic encoder served as model ``function-gemma``."""

    def __init__(self, model: str = EMBEDDED_MODEL) -> None:
        self.model = model
        self.encoder = DeterministicEncoder()

    def models(self) -> ModelList:
        """The served models."""
        return ModelList(data=[ModelCard(id=self.model)])

    def complete(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        """One report_situation call for the numbers in the last user message; ProtocolError otherwise."""
        if request.stream:
            raise ProtocolError(400, "streaming is not supported by the boundary", param="stream")
        names = [tool.function.name for tool in request.tools or []]
        if SITUATION_FUNCTION not in names:
            raise ProtocolError(400, f"the boundary answers only with {SITUATION_FUNCTION}: declare it",
                                param="tools")
        choice = request.tool_choice
        if choice == "none":
            raise ProtocolError(400, f"tool_choice 'none': the boundary answers only with "
                                f"{SITUATION_FUNCTION}", param="tool_choice")
        if isinstance(choice, NamedToolChoice) and choice.function.name != SITUATION_FUNCTION:
            raise ProtocolError(400, f"tool_choice names {choice.function.name!r}; the boundary serves "
                                f"{SITUATION_FUNCTION}", param="tool_choice.function.name")
        index, content = self._numbers(request)
        try:
            situation = self.encoder.encode(decode_numbers(content))
        except ValueError as exc:
            raise ProtocolError(400, f"the last user message is not an NPC's numbers: {exc}",
                                param=f"messages[{index}].content", code="bad_numbers") from None
        arguments = msgspec.json.encode(situation).decode()
        prompt_tokens = sum(len(m.content or "") for m in request.messages) // 4
        completion_tokens = max(1, len(arguments) // 4)
        call = ToolCall(id=f"call_{uuid.uuid4().hex[:24]}",
                        function=FunctionCall(name=SITUATION_FUNCTION, arguments=arguments))
        return ChatCompletionResponse(
            model=self.model,
            choices=[Choice(index=0, message=ResponseMessage(tool_calls=[call]), finish_reason="tool_calls")],
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
        )

    @staticmethod
    def _numbers(request: ChatCompletionRequest) -> tuple[int, str]:
        for index in range(len(request.messages) - 1, -1, -1):
            if request.messages[index].role == "user":
                return index, request.messages[index].content or ""
        raise ProtocolError(400, "no user message holding an NPC's numbers", param="messages")
