"""The cortex's OpenAI-compatible HTTP server (aiohttp): thin routes over the ``nyx`` engine.

It also serves the Function Gemma boundary's model, ``function-gemma`` (``organs.boundary.served``: the
deterministic encoder behind the protocol); each request goes to the engine its ``model`` names.
Routes: ``POST /v1/chat/completions`` (tools and tool_choice), ``GET /v1/models``, ``GET /health``.
Every error is an OpenAI-shaped body ``{"error": {"message", "type", "param", "code"}}`` with its HTTP
status (400 malformed JSON or bad fields, 404 unknown model or route, 405, 413 huge bodies, 500 for a
bug), never a traceback. ``delay_s`` holds every chat completion that long before it is answered (the
server goes on serving others meanwhile): the latency of an LLM, e.g. vLLM's hundreds of ms, for
benchmarks and tests of callers that must not wait for it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from organs.boundary.config import EMBEDDED_MODEL
from organs.boundary.served import BoundaryEngine
from organs.cortex.engine import NyxEngine
from organs.cortex.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ModelList,
    ProtocolError,
    decode_request,
    encode,
)

#: The largest request body accepted (a 128x128 situation is about 20 kB).
MAX_BODY_BYTES = 1 << 20
log = logging.getLogger(__name__)



class ChatEngine(Protocol):
    """An engine the server serves under its model name."""

    model: str

    def models(self) -> ModelList:
        """The served models."""
        ...

    def complete(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        """The answer to one request."""
        ...


class ServedModels:
    """The engines behind one server, by model name: each request goes to the one it names."""

    def __init__(self, engines: list[ChatEngine]) -> None:
        self.engines = {engine.model: engine for engine in engines}

    def models(self) -> ModelList:
        """Every served model."""
        return ModelList(data=[card for engine in self.engines.values() for card in engine.models().data])

    def complete(self, request: ChatCompletionRequest) -> ChatCompletionResponse:
        """The named engine's answer; 404 for a model nobody serves."""
        engine = self.engines.get(request.model)
        if engine is None:
            raise ProtocolError(404, f"The model `{request.model}` does not exist.", type="NotFoundError",
                                param="model", code="model_not_found")
        return engine.complete(request)


_ENGINE = web.AppKey("engine", ServedModels)
_DELAY = web.AppKey("delay_s", float)
_STATUS_TYPES = {404: "NotFoundError", 405: "invalid_request_error", 413: "invalid_request_error"}


def _error(exc: ProtocolError) -> web.Response:
    return web.Response(status=exc.status, body=encode(exc.body()), content_type="application/json")


@web.middleware
async def openai_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into an OpenAI-shaped error body."""
    try:
        return await handler(request)
    except ProtocolError as exc:
        return _error(exc)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(
            ProtocolError(413, f"request body too large: {exc.text}", param="body", code="request_too_large")
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(
            ProtocolError(
                exc.status,
                f"{request.method} {request.path}: {exc.reason}",
                type=_STATUS_TYPES.get(exc.status, "invalid_request_error"),
            )
        )
    except Exception as exc:  # a bug: answered and logged, never a traceback on the wire
        log.exception("cortex server: %s %s failed", request.method, request.path)
        return _error(ProtocolError(500, f"internal error: {type(exc).__name__}", type="InternalServerError"))


async def chat_completions(request: web.Request) -> web.Response:
    """``POST /v1/chat/completions``."""
    body = await request.read()
    response = request.app[_ENGINE].complete(decode_request(body))
    if request.app[_DELAY] > 0.0:
        await asyncio.sleep(request.app[_DELAY])
    return web.Response(body=encode(response), content_type="application/json")


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``."""
    return web.Response(body=encode(request.app[_ENGINE].models()), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """``GET /health``: 200 while the server serves."""
    return web.Response(text="ok")


def make_app(engine: NyxEngine | None = None, max_body_bytes: int = MAX_BODY_BYTES,
             boundary_model: str | None = EMBEDDED_MODEL, delay_s: float = 0.0) -> web.Application:
    """The server's application around the nyx engine and (unless boundary_model is None) the boundary's,
    each chat completion held delay_s seconds."""
    if not delay_s >= 0.0:
        raise ValueError(f"delay_s={delay_s!r}: must be >= 0")
    app = web.Application(middlewares=[openai_errors], client_max_size=max_body_bytes)
    app[_DELAY] = float(delay_s)
    engines: list[ChatEngine] = [engine or NyxEngine()]
    if boundary_model is not None:
        engines.append(BoundaryEngine(boundary_model))
    app[_ENGINE] = ServedModels(engines)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


def serve(host: str = "127.0.0.1", port: int = 31000, max_body_bytes: int = MAX_BODY_BYTES,
          boundary_model: str | None = EMBEDDED_MODEL, delay_s: float = 0.0) -> None:
    """Serve until SIGINT or SIGTERM."""
    gc.freeze()  # start-up objects (numpy, aiohttp, msgspec) leave the collector's scans: shorter pauses
    web.run_app(
        make_app(max_body_bytes=max_body_bytes, boundary_model=boundary_model, delay_s=delay_s),
        host=host,
        port=port,
        access_log=None,
        print=lambda _: print(f"cortex: serving models nyx, {boundary_model} on http://{host}:{port}/v1",
                              flush=True),
    )
