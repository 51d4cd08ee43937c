"""The only module that talks to the Kubernetes API: owned objects, status, annotations, Secret reads, Events.

Handlers in :mod:`llmroute.controller.routes`, :mod:`llmroute.controller.policies` and
:mod:`llmroute.controller.pools` decide *what* should exist
(with the pure builders of :mod:`llmroute.core.manifests` and :mod:`llmroute.controller.status`); this module makes
it so, idempotently:

* :meth:`Kube.apply` never reads an owned object from the API in the normal case: it takes the live object from an
  :class:`ObjectCache` (the watch cache of :mod:`llmroute.controller.cache`), creates the object when the cache has
  none, and merge-patches it **only when** :func:`needs_update` says the cached object differs, so re-running a
  reconcile on the same inputs sends no request at all. It tells the cache about every write (write-through), so a
  reconcile that follows before the watch has delivered the write compares against what was written. A create that
  finds the object already there (409: the cache was behind) is the one case that reads it with a GET. Merge-patch
  replaces lists whole, which is what drift repair wants (an env var or volume added by hand disappears).
  Server-side apply would be the alternative on a real cluster; the emulator used in tests has none, and the
  diff-then-patch keeps the "no write" property observable there.
* An object that exists under a desired name but is not owned by the route is never taken over: :class:`NotOwned`.
* The official ``kubernetes`` client is synchronous, so every call runs in a worker thread of the client's own pool
  (:data:`API_THREADS`, matched by the HTTP connection pool); a blocking call on the event loop would stall kopf's
  watches, and asyncio's default pool (cores + 4 threads) would cap the calls in flight below the reconciles that
  run at once.
* API failures become ``kopf.TemporaryError`` (kopf retries the handler; a route worker retries after the delay).
  Error texts carry the HTTP status and the API's reason only, never a request body: a body may hold a provider key.
* Pool pods are read with :meth:`Kube.list_labelled`, one label-selected LIST per ModelPool and scaling interval
  (:mod:`llmroute.controller.pools`); they are not watched (every pod change in the cluster would reach the
  operator for a read it needs a few times a minute).
* Secret values are read only by :meth:`Kube.read_secret_data` (a direct GET of one named Secret, cached by the
  callers with a short TTL), which returns the base64 text untouched; nothing here logs bodies. The route reconciler
  copies foreign keys from it and otherwise keeps only SHA-256 digests of the values (for the router's
  ``llmroute.io/keys-hash``, which rolls the router when a key is rotated).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast

import kopf
import kubernetes

from llmroute import __version__
from llmroute.api.base import API_VERSION
from llmroute.core.manifests import ObjectKey, comparable, key_of, needs_update, owned_by

logger = logging.getLogger(__name__)

JsonObj = dict[str, Any]
USER_AGENT = f"llmroute-operator/{__version__}"
REQUEST_TIMEOUT_S = 10.0
RETRY_DELAY_S = 5.0
API_THREADS = 16

PLURALS: Mapping[str, str] = {
    "ConfigMap": "configmaps", "Secret": "secrets", "Service": "services", "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets", "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "LLMRoute": "llmroutes", "ProviderPolicy": "providerpolicies", "ModelPool": "modelpools", "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims", "Lease": "leases", "Event": "events",
    "NetworkPolicy": "networkpolicies",
}


class NotOwned(Exception):
    """An object with a desired name exists but belongs to someone else; it is left alone."""

    def __init__(self, key: ObjectKey) -> None:
        super().__init__(f"{key.kind} {key.namespace}/{key.name} exists and is not owned by this LLMRoute")
        self.key = key


@dataclass(frozen=True)
class Applied:
    """The live object after :meth:`Kube.apply` and what was done: ``created``, ``patched`` or ``unchanged``."""

    live: JsonObj
    action: str


class ObjectCache(Protocol):
    """Where :meth:`Kube.apply` and :meth:`Kube.delete_owned` read owned objects, and whom they tell of writes."""

    def get(self, key: ObjectKey) -> JsonObj | None:
        """The live object as last seen or written (possibly in :func:`comparable` form); None if there is none."""

    def wrote(self, key: ObjectKey, live: JsonObj | None) -> None:
        """The operator just wrote ``key``: ``live`` is the API's answer, None after a delete."""


def path_of(key: ObjectKey, subresource: str | None = None) -> str:
    prefix = "/api/v1" if key.api_version == "v1" else f"/apis/{key.api_version}"
    ns = f"/namespaces/{key.namespace}" if key.namespace else ""
    name = f"/{key.name}" if key.name else ""
    sub = f"/{subresource}" if subresource else ""
    return f"{prefix}{ns}/{PLURALS[key.kind]}{name}{sub}"


class Kube:
    """Kubernetes API access for the operator; one instance per operator, kept in kopf's memo."""

    def __init__(self, client: kubernetes.client.ApiClient, agent: str = USER_AGENT) -> None:
        client.user_agent = agent  # tells the operator's writes (and each replica's) apart in audit logs and tests
        self._client = client
        self._pool = ThreadPoolExecutor(API_THREADS, thread_name_prefix="kube-api")

    @classmethod
    def for_url(cls, url: str) -> Kube:
        """A client for an unauthenticated API server URL (tests, ``kubectl proxy``)."""
        config = kubernetes.client.Configuration(host=url.rstrip("/"))
        config.connection_pool_maxsize = API_THREADS
        return cls(kubernetes.client.ApiClient(config))

    @classmethod
    def from_environment(cls, agent: str = USER_AGENT) -> Kube:
        """In-cluster service account credentials, else the current kubeconfig context (as kopf logs in)."""
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=config)  # type: ignore[no-untyped-call]
        config.connection_pool_maxsize = API_THREADS
        return cls(kubernetes.client.ApiClient(config), agent)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                    query: Mapping[str, str] | None = None) -> tuple[int, JsonObj | None]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call_sync, method, path, body,
                                                                content_type, query)

    def _call_sync(self, method: str, path: str, body: Any, content_type: str,
                   query: Mapping[str, str] | None = None) -> tuple[int, JsonObj | None]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            _, url, headers, body, _ = self._client.param_serialize(
                method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"],
                query_params=list((query or {}).items()))
            resp = self._client.call_api(method, url, header_params=headers, body=body,
                                         _request_timeout=REQUEST_TIMEOUT_S)
            data = resp.read()  # type: ignore[no-untyped-call]
        except Exception as exc:  # connection errors, timeouts: retried like 5xx
            raise kopf.TemporaryError(f"{method} {path}: {type(exc).__name__}", delay=RETRY_DELAY_S) from None
        parsed = json.loads(data) if data else None
        return resp.status, parsed if isinstance(parsed, dict) else None

    async def _checked(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                       ok: tuple[int, ...] = (), query: Mapping[str, str] | None = None) -> tuple[int, JsonObj | None]:
        status, data = await self._call(method, path, body, content_type, query)
        if status < 400 or status in ok:
            return status, data
        reason = (data or {}).get("reason") or "error"
        raise kopf.TemporaryError(f"{method} {path}: HTTP {status} {reason}", delay=RETRY_DELAY_S)

    async def get(self, key: ObjectKey) -> JsonObj | None:
        status, data = await self._checked("GET", path_of(key), ok=(404,))
        return None if status == 404 else data

    async def list_labelled(self, api_version: str, kind: str, namespace: str,
                            labels: Mapping[str, str]) -> list[JsonObj]:
        """The ``kind`` objects in ``namespace`` carrying every label in ``labels``: selected by the API server and
        filtered again here (an API emulator may ignore selectors)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        _, data = await self._checked("GET", path_of(ObjectKey(api_version, kind, namespace, "")),
                                      query={"labelSelector": selector})
        items = (data or {}).get("items") or []
        return [o for o in items if isinstance(o, dict)
                and labels.items() <= ((o.get("metadata") or {}).get("labels") or {}).items()]

    async def create(self, obj: JsonObj) -> JsonObj | None:
        """POST ``obj``; None when an object of that name exists already (409)."""
        key = key_of(obj)
        status, data = await self._checked("POST", path_of(ObjectKey(key.api_version, key.kind, key.namespace, "")),
                                           obj, ok=(409,))
        return None if status == 409 else data or obj

    async def replace(self, obj: JsonObj) -> JsonObj | None:
        """PUT ``obj`` (its ``metadata.resourceVersion`` makes it conditional); None on a conflict (409)."""
        status, data = await self._checked("PUT", path_of(key_of(obj)), obj, ok=(409,))
        return None if status == 409 else data or obj

    async def merge_patch(self, key: ObjectKey, patch: Mapping[str, Any], subresource: str | None = None) -> JsonObj:
        _, data = await self._checked("PATCH", path_of(key, subresource), dict(patch), "application/merge-patch+json")
        return data or {}

    async def apply(self, desired: JsonObj, owner_uid: str, cache: ObjectCache) -> Applied:
        """Create ``desired``, or patch the live object when it differs; never touches objects owned by others."""
        key = key_of(desired)
        live = cache.get(key)
        if live is None:
            status, data = await self._checked("POST", path_of(ObjectKey(key.api_version, key.kind, key.namespace,
                                                                          "")), desired, ok=(409,))
            if status != 409:
                cache.wrote(key, data or desired)
                return Applied(data or desired, "created")
            live = await self.get(key)  # the cache was behind (or someone else created it): fall through to the diff
            if live is None:
                raise kopf.TemporaryError(f"{key.kind} {key.namespace}/{key.name} vanished", delay=RETRY_DELAY_S)
        if not owned_by(live, owner_uid):
            raise NotOwned(key)
        if not needs_update(comparable(desired), comparable(live)):
            return Applied(live, "unchanged")
        patched = await self.merge_patch(key, desired)
        cache.wrote(key, patched)
        return Applied(patched, "patched")

    async def delete_owned(self, key: ObjectKey, owner_uid: str, cache: ObjectCache) -> bool:
        """Delete ``key`` if the cache has it and it is owned by ``owner_uid``; True if something was deleted."""
        live = cache.get(key)
        if live is None or not owned_by(live, owner_uid):
            return False
        status, _ = await self._checked("DELETE", path_of(key), ok=(404,))
        cache.wrote(key, None)
        return status != 404

    async def read_path(self, path: str) -> JsonObj | None:
        """A JSON document at a non-resource path (the service account issuer's discovery and JWKS); None when the
        API server does not serve it."""
        status, data = await self._checked("GET", path, ok=(401, 403, 404))
        return data if status < 400 else None

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's ``data`` (base64 values, as stored, never decoded); empty if the Secret is missing."""
        secret = await self.get(ObjectKey("v1", "Secret", namespace, name))
        data = (secret or {}).get("data") or {}
        return {k: v for k, v in data.items() if isinstance(v, str)}

    async def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self.merge_patch(ObjectKey(API_VERSION, kind, namespace, name), {"status": dict(status)}, "status")

    async def annotate(self, kind: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        key = ObjectKey(API_VERSION, kind, namespace, name)
        await self.merge_patch(key, {"metadata": {"annotations": dict(annotations)}})


def post_event(body: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
    """A Kubernetes Event on ``body`` (queued by kopf). Messages are built by the callers from names, never values."""
    obj = body if isinstance(body, kopf.Body) else kopf.Body(cast(kopf.RawBody, dict(body)))
    kopf.event(obj, type="Warning" if warning else "Normal", reason=reason, message=message)
