"""``POST /v1/chat/completions`` and ``POST /v1/completions`` of the emulated vLLM pod: request checks in
vLLM's order and wording, then the request's life in the engine, whole or streamed.

Checks: JSON content type and body (400 "Bad Request", FastAPI validation shape), the model name (404
NotFoundError, param "model"), draining (503), a dead engine (500, empty body, as vLLM's
EngineDeadError handler answers), context length and ``max_tokens`` (400 BadRequestError with vLLM's
messages). Unknown fields are ignored, including ``reasoning`` / ``reasoning_content`` in assistant
history. Not emulated (400): ``n`` > 1 and batched prompts. Streams send HTTP 200 at once, the first chunk
when the first token is produced, and end with ``[DONE]``; if the engine dies mid-stream they end with
vLLM's error event then ``[DONE]``. A client that leaves aborts its sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from .vllm_engine import EngineDead
from .vllm_state import VLLM_STATE, VllmState
from .vllm_wire import ENGINE_DEAD_MESSAGE, Completion, answer_pieces, error_body, validation_error
from .wire import count_tokens

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # vLLM's CompletionRequest.max_tokens default


class Reject(Exception):
    """Answer with ``status`` and ``body`` (JSON) or an empty body."""

    def __init__(self, status: int, body: bytes | None = None) -> None:
        super().__init__(status)
        self.status, self.body = status, body

    def response(self) -> web.Response:
        if self.body is None:
            return web.Response(status=self.status)
        return web.Response(status=self.status, body=self.body, content_type="application/json")


def bad_request(message: str, param: str | None = None) -> Reject:
    return Reject(400, error_body(400, message, param=param))


async def _read_body(request: web.Request, chat: bool) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Reject(400, validation_error(("header", "content-type"), "value_error",
                                           "Unsupported Media Type: Only 'application/json' is allowed"))
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise Reject(400, validation_error(("body", "0"), "json_invalid", "JSON decode error")) from None
    if not isinstance(body, dict):
        raise Reject(400, validation_error(("body",), "model_attributes_type", "Input should be a valid dictionary"))
    required = {"model": (str,), "messages": (list,)} if chat else {"model": (str,), "prompt": (str, list)}
    for name, types in required.items():
        if name not in body:
            raise Reject(400, validation_error(("body", name), "missing", "Field required"))
        if not isinstance(body[name], types):
            raise Reject(400, validation_error(("body", name), "type_error", "Input has the wrong type"))
    return body


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    if chat:
        return max(1, count_tokens(body["messages"]))
    prompt = body["prompt"]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) > 1:
            raise bad_request("vLLM emulator: batched prompts are not emulated", "prompt")
        prompt = prompt[0]
    if isinstance(prompt, list) and not all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
        raise Reject(400, validation_error(("body", "prompt"), "type_error", "Input has the wrong type"))
    return max(1, count_tokens(prompt))


def _max_tokens(body: dict[str, Any], chat: bool, prompt_tokens: int, max_model_len: int) -> int:
    """vLLM's ``_validate_input`` and ``get_max_tokens``: the most tokens this request may generate."""
    asked = body.get("max_completion_tokens") if chat else None
    if asked is None:
        asked = body.get("max_tokens", None if chat else _COMPLETIONS_DEFAULT_MAX_TOKENS)
    if asked is not None and (not isinstance(asked, int) or isinstance(asked, bool)):
        raise Reject(400, validation_error(("body", "max_tokens"), "int_type", "Input should be a valid integer"))
    if prompt_tokens >= max_model_len:
        raise bad_request(f"This model's maximum context length is {max_model_len} tokens. However, your request "
                          f"has {prompt_tokens} input tokens. Please reduce the length of the input messages.",
                          "input_tokens")
    if asked is None:
        return max_model_len - prompt_tokens
    if prompt_tokens + asked > max_model_len:
        raise bad_request(f"'max_tokens' or 'max_completion_tokens' is too large: {asked}. This model's maximum "
                          f"context length is {max_model_len} tokens and your request has {prompt_tokens} input "
                          f"tokens ({asked} > {max_model_len} - {prompt_tokens}).", "max_tokens")
    if asked < 1:
        raise bad_request(f"max_tokens must be at least 1, got {asked}.", "max_tokens")
    return int(asked)


def _plan(state: VllmState, body: dict[str, Any], chat: bool) -> Completion:
    config = state.config
    if body["model"] not in config.names:
        raise Reject(404, error_body(404, f"The model `{body['model']}` does not exist.", param="model"))
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise bad_request("vLLM emulator: n > 1 is not emulated", "n")
    if state.draining:
        raise Reject(503, error_body(503, "The server is shutting down and does not accept new requests."))
    if state.engine.dead:
        raise Reject(500)
    prompt_tokens = _prompt_tokens(body, chat)
    limit = _max_tokens(body, chat, prompt_tokens, config.max_model_len)
    template = body.get("chat_template_kwargs")
    thinking = chat and not (isinstance(template, dict) and template.get("enable_thinking") is False)
    pieces = answer_pieces(config.answer_tokens, config.reasoning_tokens if thinking else 0)
    options = body.get("stream_options")
    return Completion(
        chat=chat, id=state.request_id("chatcmpl" if chat else "cmpl"), model=config.names[0],
        prompt_tokens=prompt_tokens, pieces=pieces[:limit], finish_reason="length" if limit < len(pieces) else "stop",
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        show_reasoning=body.get("include_reasoning") is not False, reasoning_parser=config.reasoning_tokens > 0)


async def _whole(request: web.Request, state: VllmState, completion: Completion) -> web.StreamResponse:
    try:
        async with contextlib.aclosing(state.engine.generate(completion.prompt_tokens, completion.steps,
                                                             completion.finish_reason)) as tokens:
            async for _ in tokens:
                pass
    except EngineDead:
        return web.Response(status=500)
    return web.json_response(completion.body())


async def _stream(request: web.Request, state: VllmState, completion: Completion) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    try:
        try:
            async with contextlib.aclosing(state.engine.generate(completion.prompt_tokens, completion.steps,
                                                                 completion.finish_reason)) as tokens:
                async for step in tokens:
                    data = (completion.first_bytes() if step == 0 else b"") + completion.step_bytes(step)
                    if data:
                        await response.write(data)
            await response.write(completion.final_bytes())
        except EngineDead:
            await response.write(completion.error_bytes(ENGINE_DEAD_MESSAGE))
        await response.write_eof()
    except ConnectionError:
        pass  # the client left; the engine already counted an abort
    return response


async def _serve(request: web.Request, chat: bool) -> web.StreamResponse:
    state = request.app[VLLM_STATE]
    try:
        body = await _read_body(request, chat)
        if isinstance(body.get("user"), str):  # who sent it (an end-user id, never content): llmroute local counts it
            state.users[body["user"][:100]] += 1
        completion = _plan(state, body, chat)
    except Reject as exc:
        return exc.response()
    if state.engine.params.extra_delay_s:
        await asyncio.sleep(state.engine.params.extra_delay_s)
    deliver = _stream if body.get("stream") is True else _whole
    return await deliver(request, state, completion)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, chat=True)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, chat=False)
