"""OpenAI-shaped error bodies for everything the router itself refuses or gives up on.

Owns the error vocabulary the router speaks to clients: ``{"error": {"message", "type", "code", "param"}}`` with the
HTTP status the official ``openai`` SDK maps to its exception types (404 ``NotFoundError``, 400 ``BadRequestError``,
403 ``PermissionDeniedError``, 413 ``APIStatusError``, 503 ``InternalServerError``). Upstream errors that are the
client's fault (400/422) are not built here: the proxy returns them as they came.

Built by :mod:`llmroute.router.proxy` and :mod:`llmroute.router.failover`; rendered by :mod:`llmroute.router.app`.
Messages never contain prompts or keys, only model, class and provider names from the config.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from llmroute.core.cold_start import RETRY_AFTER_S
from llmroute.core.router_config import Denial


@dataclass(frozen=True)
class RouterError:
    """An error the router answers itself; ``headers`` are extra response headers (e.g. Retry-After)."""

    status: int
    message: str
    type: str
    code: str
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def body(self) -> bytes:
        return json.dumps(self.payload()).encode()

    def sse_event(self) -> bytes:
        """The error as one SSE data event, for a stream whose headers already went out."""
        return b"data: " + self.body() + b"\n\n"


def invalid_json(detail: str) -> RouterError:
    return RouterError(400, f"We could not parse the JSON body of your request: {detail}",
                       "invalid_request_error", "invalid_json")


def invalid_body(message: str, param: str | None = None) -> RouterError:
    return RouterError(400, message, "invalid_request_error", "invalid_request", param)


def too_large(size: int, limit: int) -> RouterError:
    return RouterError(413, f"Request body of {size} bytes exceeds the limit of {limit} bytes.",
                       "invalid_request_error", "request_too_large")


def model_not_found(model: str, published: Iterable[str]) -> RouterError:
    known = ", ".join(published) or "none"
    return RouterError(404, f"The model `{_clip(model)}` does not exist on this router (published: {known}).",
                       "invalid_request_error", "model_not_found", "model")


def unknown_data_class(name: str, known: Iterable[str]) -> RouterError:
    return RouterError(400, f'Unknown data class "{_clip(name)}" (known: {", ".join(known)}); set it with the '
                       "x-llmroute-data-class header.", "invalid_request_error", "unknown_data_class")


def no_compliant_backend(model: str, data_class: str, denied: Iterable[Denial], escalated: str = "") -> RouterError:
    """``escalated``: why the request is held to more than its declared class (types found, never values)."""
    why = "; ".join(f"{d.provider}/{d.model}: {', '.join(d.reasons)}" for d in denied) or "no backends configured"
    because = f" ({escalated})" if escalated else ""
    return RouterError(403, f'No backend of model "{model}" may receive data class "{data_class}"{because}: {why}',
                       "permission_error", "no_compliant_backend")


def pii_blocked(data_class: str, types: Sequence[str]) -> RouterError:
    """A request holding personal data of types its data class Blocks; names the types, never the values."""
    kinds = ", ".join(types)
    return RouterError(400, f'The request contains {kinds}, which data class "{data_class}" does not allow to be sent '
                       "(redaction mode Block); remove it and retry.", "invalid_request_error", "pii_blocked")


def no_healthy_backend(model: str, data_class: str, reasons: Iterable[str], retry_after_s: int) -> RouterError:
    why = "; ".join(reasons) or "no backend answered"
    return RouterError(503, f'No healthy backend for model "{model}" and data class "{data_class}": {why}',
                       "server_error", "no_healthy_backend", headers={"Retry-After": str(retry_after_s)})


def pool_starting(model: str, data_class: str, pools: Sequence[str], why: str) -> RouterError:
    """A request held for ModelPools with no ready pod that got none (or could not be held)."""
    starting = f"pool {pools[0]} is" if len(pools) == 1 else f"pools {', '.join(pools)} are"
    return RouterError(503, f'No healthy backend for model "{model}" and data class "{data_class}": {starting} '
                       f"starting ({why}); retry later.", "server_error", "no_healthy_backend",
                       headers={"Retry-After": str(RETRY_AFTER_S)})


def stream_interrupted(provider: str, reason: str) -> RouterError:
    return RouterError(502, f"The upstream stream from provider {provider} ended early: {reason}.",
                       "server_error", "stream_interrupted")


def not_found(path: str) -> RouterError:
    return RouterError(404, f"Unknown path {_clip(path)}.", "invalid_request_error", "not_found")


def not_ready() -> RouterError:
    return RouterError(503, "The router has no valid configuration loaded yet.", "server_error", "not_ready",
                       headers={"Retry-After": "1"})


def _clip(text: str, limit: int = 100) -> str:
    """Client-supplied names echoed back are cut short (they are not logged anywhere)."""
    return text if len(text) <= limit else text[:limit] + "..."
