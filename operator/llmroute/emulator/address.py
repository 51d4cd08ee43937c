"""Where an emulated server listens: the URLs of :class:`~llmroute.emulator.runner.Emulator` and
:class:`~llmroute.emulator.vllm_pod.VllmPod`, written once."""

from __future__ import annotations


class Addressed:
    """``host``, ``port`` and TLS or not, as ``base_url`` (the root), ``url`` (the OpenAI base, ``/v1``) and
    ``admin_url`` (the emulator's own API, never counted or faulted)."""

    host: str
    port: int
    tls: bool = False

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}/_emulator"
