"""The real kopf operator against kmock's Kubernetes emulator, in the test's event loop.

* :class:`RealisticEmulator` is TOOLCHAIN.md Appendix A verbatim (kmock 0.8 + kopf 1.45 need it; pinned kmock==0.8).
* ``operator`` runs ``kopf.operator(...)`` with a fresh registry from :func:`llmroute.controller.build_registry`, a
  0.3 s resync, and a login handler pointing at the emulator; it is stopped with ``task.cancel()`` (a stop flag would
  cost 5 s of kopf's hung-task wait).
* :class:`Cluster` is the test's own "kubectl": HTTP calls with a distinct User-Agent, so assertions on the requests
  the operator made can leave the test's own requests out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import jsonpatch
import kmock
import kopf
import pytest
import yaml
from kmock._internal import enums

from llmroute.controller import build_registry
from llmroute.controller.kube import Kube
from llmroute.controller.settings import Settings
from tests.conftest import ROOT, example_doc

TEST_AGENT = "llmroute-tests"
RESYNC_S = 0.3

# --- TOOLCHAIN.md Appendix A, verbatim ---------------------------------------------------------------------------
# A thin kmock (0.8) subclass adding what kopf>=1.45 needs from an API server:
# - resourceVersion on every write (kopf JSON-patches finalizers with a `test` op on it),
#   plus uid/creationTimestamp/generation and namespace-from-URL on create;
# - a real resourceVersion on LIST, and WATCH?resourceVersion=N that does not replay
#   objects older than N (upstream replays everything as ADDED -> kopf stalls);
# - watch subscribes to the event bus BEFORE replaying (upstream can lose events);
# - 422 instead of 500 when a JSON-patch `test` op fails (optimistic concurrency).


@attrs.define(kw_only=True)
class RealisticEmulator(kmock.KubernetesEmulator):
    _rv: int = attrs.field(default=1000, init=False)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    async def _handle(self, request):
        # kmock only recognises `?watch=true`; kubernetes/kubernetes_asyncio send `watch=True`.
        if request.action == enums.action.LIST and request.params.get('watch', '').lower() in ('true', '1'):
            object.__setattr__(request, 'action', enums.action.WATCH)  # frozen attrs; must stay the same object
        if request.resource is not None and isinstance(request.data, (dict, list)):
            if request.action == enums.action.CREATE and isinstance(request.data, dict):
                meta = request.data.setdefault('metadata', {})
                if request.namespace and not meta.get('namespace'):
                    meta['namespace'] = request.namespace   # real API servers fill it from the URL
                meta.update(resourceVersion=self._next_rv(), uid=str(uuid.uuid4()), generation=1,
                            creationTimestamp=datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ'))
            elif request.action == enums.action.UPDATE:
                if isinstance(request.data, dict):
                    request.data.setdefault('metadata', {})['resourceVersion'] = self._next_rv()
                else:  # JSON-patch: the `test` ops run first against the old version, then we bump it
                    request.data.append({'op': 'add', 'path': '/metadata/resourceVersion', 'value': self._next_rv()})
            if request.action == enums.action.CREATE and request.resource.plural == 'customresourcedefinitions':
                self._register_crd(request.data)
        return await super()._handle(request)

    def _register_crd(self, crd):
        # Upstream does not turn CRD objects into served resources; do it, so discovery sees them.
        spec = crd.get('spec', {})
        names = spec.get('names', {})
        for v in spec.get('versions', []):
            if v.get('served', True):
                self.resources[f"{spec['group']}/{v['name']}/{names['plural']}"] = kmock.ResourceInfo(
                    namespaced=spec.get('scope') == 'Namespaced', kind=names.get('kind'),
                    singular=names.get('singular'), shortnames=names.get('shortNames', []),
                    categories=names.get('categories', []),
                    verbs={'create', 'delete', 'get', 'list', 'patch', 'update', 'watch'},
                    subresources={k for k in (v.get('subresources') or {})})  # noqa: C416

    async def _render_error(self, exc):
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            return aiohttp.web.json_response({'apiVersion': 'v1', 'kind': 'Status', 'status': 'Failure',
                                              'code': 422, 'reason': 'Invalid', 'message': str(exc)}, status=422)
        return await super()._render_error(exc)

    async def _serve_list(self, request):
        result = await super()._serve_list(request)
        result['metadata']['resourceVersion'] = str(self._rv)
        info = self.resources[request.resource] if request.resource in self.resources else None  # noqa: SIM401
        if info is not None and info.kind:   # kubectl/helm need `kind: XxxList` + apiVersion on lists
            g, v = request.resource.group, request.resource.version
            result = {'apiVersion': f'{g}/{v}' if g else v, 'kind': f'{info.kind}List', **result}
        return result

    async def _serve_watch(self, request):
        yield b''
        since = request.params.get('resourceVersion', '')
        since_n = int(since) if since.isdigit() and since != '0' else None
        bus = self._buses[request.resource]
        marker = await bus.mark()
        try:
            async with self._lock:
                objs = [o for o in self._KubernetesEmulator__get_objs(request, strict=False) if not o.deleted]
                events = [{'type': 'ADDED', 'object': o.raw} for o in objs
                          if since_n is None or int(o.raw['metadata'].get('resourceVersion', 0)) > since_n]
                seen = {(o.raw['metadata'].get('namespace'), o.raw['metadata']['name']):
                        o.raw['metadata'].get('resourceVersion') for o in objs}
            for event in events:
                yield event
            async for event in bus.stream(since=marker):
                meta = event.get('object', {}).get('metadata', {})
                key = (meta.get('namespace'), meta.get('name'))
                if since_n is not None and int(meta.get('resourceVersion') or 0) <= since_n and event['type'] != 'DELETED':  # noqa: E501
                    continue
                if since_n is None and event['type'] != 'DELETED' and key in seen and seen.pop(key) == meta.get('resourceVersion'):  # noqa: E501
                    continue  # already replayed in the initial ADDED batch
                if self._KubernetesEmulator__check(request, request.resource, key[0], key[1], strict=False):
                    yield event
        finally:
            await bus.unmark(marker)


    async def _serve_version(self, request):
        result = await super()._serve_version(request)
        if result.get('groupVersion', '').startswith('/'):   # upstream says "/v1" for the core group
            result['groupVersion'] = result['groupVersion'][1:]
        return result


# --- fixtures ---------------------------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class Emulator(RealisticEmulator):
    """Appendix A plus ``metadata.generateName`` (kopf names its Events that way; kmock 0.8 ignores it, so every
    Event after the first would be a 409)."""

    async def _handle(self, request: Any) -> Any:
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        return await super()._handle(request)


@pytest.fixture()
def kmock_options() -> dict[str, Any]:
    return {"cls": Emulator}


class Cluster:
    """What a user does with kubectl, over HTTP against the emulator."""

    def __init__(self, emulator: Any, session: aiohttp.ClientSession) -> None:
        self.emulator = emulator
        self.url = str(emulator.url).rstrip("/")
        self.session = session

    @staticmethod
    def path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        return (prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
                + (f"/{name}" if name else "") + (f"/{sub}" if sub else ""))

    async def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        headers = {"User-Agent": TEST_AGENT, "Content-Type": content_type}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as resp:
            data = await resp.json(content_type=None) if resp.content_length != 0 else None
            if resp.status == 404 and method == "GET":
                return None
            assert resp.status < 400, f"{method} {path}: {resp.status} {data}"
            return data

    async def create(self, obj: dict[str, Any], plural: str) -> Any:
        ns = obj["metadata"].get("namespace")
        return await self.call("POST", self.path(obj["apiVersion"], plural, ns), obj)

    async def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> Any:
        return await self.call("GET", self.path(api_version, plural, namespace, name))

    async def list(self, api_version: str, plural: str) -> list[dict[str, Any]]:
        data = await self.call("GET", self.path(api_version, plural))
        return list((data or {}).get("items", []))

    async def patch(self, api_version: str, plural: str, namespace: str | None, name: str, patch: Any,
                    sub: str | None = None) -> Any:
        return await self.call("PATCH", self.path(api_version, plural, namespace, name, sub), patch,
                               "application/merge-patch+json")

    async def delete(self, api_version: str, plural: str, namespace: str | None, name: str) -> Any:
        return await self.call("DELETE", self.path(api_version, plural, namespace, name))

    def operator_requests(self) -> list[Any]:
        """Requests not made by the test itself (kopf's and the operator's)."""
        return [r for r in self.emulator if r.headers.get("User-Agent") != TEST_AGENT]


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 5.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (returned), failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError):
            last = await check()
            if last:
                return last
        await asyncio.sleep(0.02)
    last = await check()
    assert last, f"timed out after {within}s waiting for {what}"
    return last


async def settled(cluster: Cluster, quiet: float = 3 * RESYNC_S, within: float = 8.0) -> None:
    """Wait until the operator has sent no write for ``quiet`` seconds (resync ticks send only reads)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = len(writes(cluster))
        await asyncio.sleep(quiet)
        if len(writes(cluster)) == before:
            return
    raise AssertionError("the operator kept writing")


def writes(cluster: Cluster) -> list[Any]:
    return [r for r in cluster.operator_requests() if verb(r) in ("POST", "PATCH", "PUT", "DELETE")
            and r.resource is not None and r.resource.plural != "events"]


def verb(request: Any) -> str:
    return str(getattr(request.method, "value", request.method)).upper()


def available(replicas: int = 2) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": {"replicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas,
                       "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                       "lastTransitionTime": now, "lastUpdateTime": now}]}}


def secret_values() -> dict[str, str]:
    return dict(example_doc("secrets")["stringData"])


def secret_doc() -> dict[str, Any]:
    doc = example_doc("secrets")
    doc["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in doc.pop("stringData").items()}
    return doc


@pytest.fixture()
async def cluster(kmock: Any) -> AsyncIterator[Cluster]:
    kmock.resources.load_bundled()
    async with aiohttp.ClientSession() as session:
        c = Cluster(kmock, session)
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            await c.create(yaml.safe_load(path.read_text()), "customresourcedefinitions")
        yield c


OperatorRunner = Callable[[], Awaitable[None]]


StartOperator = Callable[..., Awaitable[asyncio.Task[None]]]


@pytest.fixture()
async def start_operator(cluster: Cluster) -> AsyncIterator[StartOperator]:
    """Starts (and at teardown stops) the real operator; call it again after stopping one to test a restart.
    Keyword arguments override :class:`Settings` fields; the provider prober is off unless ``probe_providers=True``
    (the example policy's endpoints are the real providers')."""
    tasks: list[asyncio.Task[None]] = []

    async def start(**overrides: Any) -> asyncio.Task[None]:
        fields: dict[str, Any] = {"router_image": "registry.example/llmroute:test", "resync_seconds": RESYNC_S,
                                  "probe_providers": False, **overrides}
        settings = Settings(**fields)
        registry = build_registry(settings)

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=cluster.url)

        kube = Kube.for_url(cluster.url)
        ready = asyncio.Event()
        task = asyncio.create_task(kopf.operator(
            registry=registry, clusterwide=True, standalone=True, ready_flag=ready,
            memo=kopf.Memo(kube=kube, settings=settings)))
        await asyncio.wait_for(ready.wait(), 10)
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        await stop(task)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture()
async def operator(start_operator: StartOperator, cluster: Cluster) -> Cluster:
    await start_operator()
    return cluster
