"""The bytes and JSON the emulator speaks: DeepSeek's chat/text completion bodies and SSE chunks,
usage blocks, error bodies, embeddings and the model list.

Shapes follow api.deepseek.com (reference/deepseek-api-integration-guide.txt): ``id``, ``object``,
``created``, ``model``, ``system_fingerprint``; choices with ``index``, ``message``/``delta``,
``logprobs: null`` and ``finish_reason``; usage with ``prompt_cache_hit_tokens`` /
``prompt_cache_miss_tokens``; ``reasoning_content`` for reasoner models (vLLM names it ``reasoning``).
:func:`history_error` holds DeepSeek's two rules for reasoning sent back in ``messages``.
Content is deterministic lorem text, one word per token; prompts are counted (words), never kept - except in echo
mode (:func:`plan_generation` with ``echo``, for tests of what a router does to a prompt and its answer): the answer
is then the last user message itself, in pieces of a few characters, as content (and reasoning, for reasoner
models), or as the arguments of a call to the request's first tool.
Pure (no I/O); used by :mod:`llmroute.emulator.app` and :mod:`llmroute.emulator.delivery`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

DEFAULT_COMPLETION_TOKENS = 16
REASONING_TOKENS = 8
SYSTEM_FINGERPRINT = "fp_emulator_prod"
SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b": keep-alive\n\n"
BLANK_LINE = b"\n"

_WORDS = ("Lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
          "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua")
_THOUGHTS = ("Let", "me", "think", "about", "this", "step", "by", "step")

# DeepSeek's error table (api-docs.deepseek.com/quick_start/error_codes). The 401/402/422 bodies match
# ones returned by api.deepseek.com; the rest reuse that shape with the table's wording.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("Invalid Format", "invalid_request_error"),
    401: ("Authentication Fails (auth header format should be Bearer sk-...)", "authentication_error"),
    402: ("Insufficient Balance", "unknown_error"),
    403: ("Permission Denied", "permission_error"),
    404: ("Not Found", "invalid_request_error"),
    422: ("Invalid Parameters", "invalid_request_error"),
    429: ("Rate Limit Reached", "rate_limit_error"),
    500: ("Server Error", "server_error"),
    503: ("Server Overloaded", "server_error"),
}
# 502/504 come from the edge proxy, not the API: an HTML page, as nginx writes it.
_GATEWAY_HTML = "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}" \
    "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
_GATEWAY_REASONS = {502: "Bad Gateway", 504: "Gateway Time-out"}


def error_payload(status: int, message: str | None = None) -> tuple[bytes, str]:
    """The body and content type of an error response with ``status``."""
    if status in _GATEWAY_REASONS:
        return _GATEWAY_HTML.format(code=status, reason=_GATEWAY_REASONS[status]).encode(), "text/html"
    default, kind = _ERRORS.get(status, ("Server Error", "server_error"))
    error = {"message": message or default, "type": kind, "param": None, "code": "invalid_request_error"}
    return json.dumps({"error": error}).encode(), "application/json"


REASONING_NOT_ALLOWED = "reasoning_content is not allowed in input messages; remove it from the request"
REASONING_REQUIRED = "The reasoning_content in the thinking mode must be passed back to the API."


def history_error(body: dict[str, Any]) -> str | None:
    """Why DeepSeek's API answers 400 to these chat ``messages``, or None.

    * ``reasoning_content`` on an assistant message without ``tool_calls``: the reasoner's documented rule
      (api-docs.deepseek.com/guides/reasoning_model: drop it from the history, else 400). Wording is ours.
    * A reasoner (thinking-mode) assistant message with ``tool_calls`` but no ``reasoning_content``: its thinking
      mode needs that reasoning passed back (api-docs.deepseek.com/guides/thinking_mode); wording as DeepSeek's.
    """
    for message in body.get("messages") or ():
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        if message.get("tool_calls"):
            if "reasoner" in str(body.get("model")) and "reasoning_content" not in message:
                return REASONING_REQUIRED
        elif "reasoning_content" in message:
            return REASONING_NOT_ALLOWED
    return None


def count_tokens(value: object) -> int:
    """Words in prompt-like JSON: strings, token-id lists, messages (``content``) and parts (``text``)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        return sum(count_tokens(item) for item in value)
    if isinstance(value, dict):
        return count_tokens(value.get("content")) + count_tokens(value.get("text"))
    return 0


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


ARGUMENTS = "arguments"
"""The piece field of tool-call arguments (echo mode with tools)."""


@dataclass(frozen=True)
class Generation:
    """One deterministic completion: ``pieces`` are (field, text) tokens, reasoning first; with ``tool`` (name, call
    id) the ``arguments`` pieces stream the call's arguments."""

    chat: bool
    model: str
    prompt_tokens: int
    pieces: tuple[tuple[str, str], ...]
    finish_reason: str
    reasoning_field: str
    n: int = 1
    include_usage: bool = False
    tool: tuple[str, str] | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def steps(self) -> int:
        return len(self.pieces)

    @property
    def reasoning(self) -> bool:
        return self.chat and any(f == self.reasoning_field for f, _ in self.pieces)

    def usage(self) -> dict[str, Any]:
        completion = self.steps * self.n
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": self.prompt_tokens,
        }
        if self.reasoning:
            thoughts = sum(f == self.reasoning_field for f, _ in self.pieces) * self.n
            usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
        return usage

    def _text(self, kind: str) -> str:
        return "".join(t for f, t in self.pieces if f == kind)

    def body(self) -> dict[str, Any]:
        """The non-streaming response body."""
        choices = []
        for index in range(self.n):
            if self.chat:
                message: dict[str, Any] = {"role": "assistant", "content": self._text("content")}
                if self.reasoning:
                    message[self.reasoning_field] = self._text(self.reasoning_field)
                if self.tool is not None:
                    message["content"] = None
                    message["tool_calls"] = [{"id": self.tool[1], "type": "function",
                                              "function": {"name": self.tool[0], "arguments": self._text(ARGUMENTS)}}]
                choices.append({"index": index, "message": message, "logprobs": None,
                                "finish_reason": self.finish_reason})
            else:
                choices.append({"text": self._text("content"), "index": index, "logprobs": None,
                                "finish_reason": self.finish_reason})
        return {**self._head("chat.completion" if self.chat else "text_completion"), "choices": choices,
                "usage": self.usage()}

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": SYSTEM_FINGERPRINT}

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk = {**self._head("chat.completion.chunk" if self.chat else "text_completion"), "choices": choices}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _delta(self, piece: tuple[str, str] | None, first: bool, opens_call: bool = False) -> dict[str, Any]:
        kind, text = piece if piece is not None else ("content", "")
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if kind == ARGUMENTS and self.tool is not None:
            call: dict[str, Any] = {"index": 0, "function": {"arguments": text}}
            if opens_call:  # the call's first delta names it
                call = {"index": 0, "id": self.tool[1], "type": "function",
                        "function": {"name": self.tool[0], "arguments": text}}
            delta["content"] = None
            delta["tool_calls"] = [call]
            return delta
        if self.reasoning:
            delta["content"] = text if kind == "content" else None
            delta[self.reasoning_field] = text if kind != "content" else None
        else:
            delta["content"] = text
        return delta

    def _choice(self, index: int, piece: tuple[str, str] | None, first: bool, finish: str | None,
                opens_call: bool = False) -> dict[str, Any]:
        if self.chat:
            return {"index": index, "delta": self._delta(piece, first, opens_call), "logprobs": None,
                    "finish_reason": finish}
        return {"text": piece[1] if piece else "", "index": index, "logprobs": None, "finish_reason": finish}

    def step_bytes(self, step: int) -> bytes:
        """The SSE chunk(s) carrying token ``step`` for every choice (the first also carries the role)."""
        piece = self.pieces[step]
        opens = piece[0] == ARGUMENTS and (step == 0 or self.pieces[step - 1][0] != ARGUMENTS)
        return b"".join(sse(self._chunk([self._choice(i, piece, step == 0, None, opens)])) for i in range(self.n))

    def final_bytes(self) -> bytes:
        """Finish chunk(s), the usage chunk if asked for, and ``[DONE]``."""
        out = [sse(self._chunk([self._choice(i, None, self.steps == 0, self.finish_reason)]))
               for i in range(self.n)]
        if self.include_usage:
            out.append(sse({**self._chunk([]), "usage": self.usage()}))
        out.append(SSE_DONE)
        return b"".join(out)


def plan_generation(body: dict[str, Any], *, chat: bool, reasoning_field: str, echo: int | None = None) -> Generation:
    """The completion the emulator will produce for a validated request body; ``echo``: answer with the last user
    message (the prompt) in pieces of that many characters instead (see the module docstring)."""
    model = str(body["model"])
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    tokens = min(int(limit), 100_000) if isinstance(limit, int) and limit >= 0 else DEFAULT_COMPLETION_TOKENS
    pieces: list[tuple[str, str]] = []
    tool = _first_tool(body) if chat and echo else None
    if echo:
        said = _last_user_text(body) if chat else _prompt_text(body)
        cut = [said[i:i + echo] for i in range(0, len(said), echo)]
        if chat and "reasoner" in model:
            pieces += [(reasoning_field, t) for t in cut]
        if tool is not None:
            pieces += [(ARGUMENTS, t) for t in _cut(json.dumps({"text": said}), echo)]
        else:
            pieces += [("content", t) for t in cut]
    else:
        if chat and "reasoner" in model:
            pieces += [(reasoning_field, (" " if i else "") + _THOUGHTS[i % len(_THOUGHTS)])
                       for i in range(REASONING_TOKENS)]
        pieces += [("content", (" " if i else "") + _WORDS[i % len(_WORDS)]) for i in range(tokens)]
    n = body.get("n")
    options = body.get("stream_options")
    finish = "length" if isinstance(limit, int) and not echo else "tool_calls" if tool is not None else "stop"
    return Generation(
        chat=chat, model=model, reasoning_field=reasoning_field,
        prompt_tokens=count_tokens(body.get("messages") if chat else body.get("prompt")),
        pieces=tuple(pieces), finish_reason=finish,
        n=max(1, min(n, 16)) if isinstance(n, int) else 1,
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        tool=None if tool is None else (tool, "call_" + uuid.uuid4().hex[:12]),
    )


def _cut(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (a string, or its text parts joined)."""
    for message in reversed(body.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _prompt_text(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = next((p for p in prompt if isinstance(p, str)), "")
    return prompt if isinstance(prompt, str) else ""


def _first_tool(body: dict[str, Any]) -> str | None:
    """The name of the request's first function tool, unless ``tool_choice`` is ``none``."""
    tools = body.get("tools")
    if body.get("tool_choice") == "none" or not isinstance(tools, list):
        return None
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            return name
    return None


def embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def embeddings_body(model: str, inputs: list[Any], dimensions: int, encoding: str) -> dict[str, Any]:
    data = []
    for index, item in enumerate(inputs):
        vector = embedding(item if isinstance(item, str) else json.dumps(item), dimensions)
        encoded: Any = vector
        if encoding == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = count_tokens(inputs)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def models_body(models: list[str], owner: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": owner} for m in models]}
