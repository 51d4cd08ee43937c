"""The JSON and SSE bytes a vLLM OpenAI server (vllm/vllm-openai) speaks: the model list, error bodies,
chat and text completions (whole and streamed) and usage blocks.

Shapes follow vLLM's pydantic protocol models as FastAPI serializes them: whole responses are full dumps
(``null`` fields included: ``stop_reason``, ``token_ids``, ``prompt_logprobs``, ``kv_transfer_params``...),
stream chunks are ``exclude_unset`` dumps (no ``usage`` key unless asked, the first chat chunk carries
``{"role": "assistant", "content": ""}``, the last token chunk carries ``finish_reason`` and ``stop_reason``),
the usage chunk drops ``None``s. Reasoning is ``reasoning`` (added by vLLM PR #27752; ``reasoning_content``
is gone since PR #33402), in ``message.reasoning`` and ``delta.reasoning``. Errors are
``{"error": {"message", "type", "param", "code": <int>}}``; ``--api-key`` rejections are
``{"error": "Unauthorized"}``. Content is deterministic lorem text, one word per token.
Pure (no I/O, no clock besides ``created``); used by :mod:`llmroute.emulator.vllm_app`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .wire import SSE_DONE, sse

VLLM_VERSION = "0.17.1"  # what GET /version reports
ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause."

_WORDS = ("The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "a", "small", "model",
          "serves", "many", "requests", "in", "one", "batch")
_THOUGHTS = ("Okay,", "the", "user", "wants", "a", "short", "answer.", "Let", "me", "think.")
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError",
                501: "NotImplementedError", 503: "ServiceUnavailableError"}


def error_body(status: int, message: str, *, err_type: str | None = None, param: str | None = None) -> bytes:
    """vLLM's ``ErrorResponse`` for ``status``; ``err_type`` defaults to vLLM's name for the status."""
    error = {"message": message, "type": err_type or _ERROR_TYPES.get(status, "InternalServerError"),
             "param": param, "code": status}
    return json.dumps({"error": error}).encode()


def validation_error(loc: tuple[str, ...], kind: str, msg: str) -> bytes:
    """FastAPI's RequestValidationError as vLLM rewrites it: HTTP 400, ``type`` is the status phrase."""
    detail = str([{"type": kind, "loc": loc, "msg": msg, "input": None}])
    return error_body(400, detail, err_type="Bad Request")


def models_body(names: tuple[str, ...], root: str, max_model_len: int, created: int) -> dict[str, Any]:
    """``GET /v1/models``: one card per served name, all rooted at the weights id."""
    def card(name: str) -> dict[str, Any]:
        digest = hashlib.sha256(f"{name}:{created}".encode()).hexdigest()[:32]
        permission = {"id": f"modelperm-{digest}", "object": "model_permission",
                      "created": created, "allow_create_engine": False, "allow_sampling": True,
                      "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                      "allow_fine_tuning": False, "organization": "*", "group": None, "is_blocking": False}
        return {"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": root,
                "parent": None, "max_model_len": max_model_len, "permission": [permission]}

    return {"object": "list", "data": [card(name) for name in names]}


def answer_pieces(answer_tokens: int, reasoning_tokens: int) -> tuple[tuple[bool, str], ...]:
    """(is_reasoning, text) per generated token: the reasoning first, then the answer."""
    thoughts = [(True, (" " if i else "") + _THOUGHTS[i % len(_THOUGHTS)]) for i in range(reasoning_tokens)]
    words = [(False, (" " if i else "") + _WORDS[i % len(_WORDS)]) for i in range(answer_tokens)]
    return (*thoughts, *words)


@dataclass(frozen=True)
class Completion:
    """One planned completion (a single choice); ``pieces`` are its tokens, in order."""

    chat: bool
    id: str
    model: str
    prompt_tokens: int
    pieces: tuple[tuple[bool, str], ...]
    finish_reason: str
    include_usage: bool = False
    show_reasoning: bool = True  # False: `include_reasoning: false` (generated and counted, not sent)
    reasoning_parser: bool = False  # the server runs a reasoning parser: usage gets reasoning_tokens
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def steps(self) -> int:
        return len(self.pieces)

    def usage(self, *, drop_none: bool = False) -> dict[str, Any]:
        completion = self.steps
        usage: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens + completion,
                                 "completion_tokens": completion}
        if not drop_none:
            usage["prompt_tokens_details"] = None
        if self.reasoning_parser and self.chat:
            usage["completion_tokens_details"] = {"reasoning_tokens": sum(r for r, _ in self.pieces)}
        return usage

    def _text(self, reasoning: bool) -> str:
        return "".join(text for is_reasoning, text in self.pieces if is_reasoning == reasoning)

    def body(self) -> dict[str, Any]:
        """The whole (non-streaming) response."""
        head = {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model}
        if self.chat:
            thoughts = self._text(True) if self.show_reasoning else ""
            message: dict[str, Any] = {
                "role": "assistant", "content": self._text(False), "refusal": None, "annotations": None,
                "audio": None, "function_call": None, "tool_calls": [], "reasoning": thoughts or None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason,
                      "stop_reason": None, "token_ids": None}
            tail: dict[str, Any] = {"service_tier": None, "system_fingerprint": None, "usage": self.usage(),
                                    "prompt_logprobs": None, "prompt_token_ids": None, "kv_transfer_params": None}
        else:
            choice = {"index": 0, "text": self._text(False), "logprobs": None, "finish_reason": self.finish_reason,
                      "stop_reason": None, "token_ids": None, "prompt_logprobs": None, "prompt_token_ids": None}
            tail = {"service_tier": None, "system_fingerprint": None, "usage": self.usage(),
                    "kv_transfer_params": None}
        return {**head, "choices": [choice], **tail}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return sse({"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices,
                    **extra})

    def first_bytes(self) -> bytes:
        """What goes out when the first token is produced, before it: the role chunk (chat only)."""
        if not self.chat:
            return b""
        choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        return self._chunk([choice], prompt_token_ids=None)

    def step_bytes(self, step: int) -> bytes:
        """The chunk carrying token ``step``; the last one also carries ``finish_reason``."""
        is_reasoning, text = self.pieces[step]
        last = step == self.steps - 1
        if is_reasoning and not self.show_reasoning and not last:
            return b""  # the parser swallows hidden reasoning
        finish: dict[str, Any] = {"finish_reason": self.finish_reason if last else None}
        if last:
            finish["stop_reason"] = None
        if not self.chat:
            return self._chunk([{"index": 0, "text": text, "logprobs": None, **finish}])
        delta = {} if is_reasoning and not self.show_reasoning else {"reasoning" if is_reasoning else "content": text}
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, **finish, "token_ids": None}])

    def final_bytes(self) -> bytes:
        """The usage chunk if asked for, then ``[DONE]``."""
        if not self.include_usage:
            return SSE_DONE
        return self._chunk([], usage=self.usage(drop_none=True)) + SSE_DONE

    def error_bytes(self, message: str) -> bytes:
        """How vLLM ends a stream whose engine failed mid-way: an error event, then ``[DONE]``."""
        error = {"message": message, "type": "InternalServerError", "param": None, "code": 500}
        return sse({"error": error}) + SSE_DONE
