"""Desired Kubernetes objects for one LLMRoute's router, as plain dicts. Pure: no I/O, no clock, no client types.

Called by :mod:`llmroute.controller.routes` (which applies the result through :mod:`llmroute.controller.kube`) and
by the unit tests, which validate every object against the Kubernetes 1.30 and 1.35 schemas.

What a route owns (every object carries a controller ownerReference to the LLMRoute and the
``app.kubernetes.io/*`` labels):

* ConfigMap ``<route>-router-config``: ``config.json`` = :meth:`RouterConfig.to_json`. References to keys only.
* Deployment ``<route>-router``: the router, with the ConfigMap mounted at ``/etc/llmroute``, probes on ``/readyz``
  and ``/healthz``, a hardened security context, and two pod-template annotations, the only things that roll the
  router (the replica count, resources or provider health change neither):

  - ``llmroute.io/config-hash`` = :meth:`RouterConfig.content_hash`: changes when the routing config changes, and
    only then.
  - ``llmroute.io/keys-hash`` = :func:`keys_hash`: changes when a provider key the router's env vars reference
    changes (rotated, added, removed), and only then. Env vars are read at pod start, so without it a rotated key
    would reach running routers only at their next restart; with it the rotation is a rolling update (maxUnavailable
    0, PDB-protected) like a config change.
  The router container's env holds key references, the demand URL and the operator-wide client limits
  (:data:`ROUTER_LIMIT_ENV`, only those the operator was given: unset, the pod template is what it was before they
  existed, so upgrading the operator rolls no router).
* Service ``<route>-router``: port 80 → container port ``http`` (8080), which also serves ``/metrics``.
* PodDisruptionBudget ``<route>-router`` (minAvailable 1) only when more than one replica is wanted.
* HorizontalPodAutoscaler ``<route>-router`` (autoscaling/v2) only with ``spec.router.autoscaling``; the Deployment
  then leaves ``replicas`` to the HPA.
* Secret ``<route>-provider-keys`` only when a provider key lives in **another namespace**.
* NetworkPolicy ``<route>-router`` only when the operator is told to (``RouterSettings.network_policies``, the
  chart's ``networkPolicies.enabled``): router pods accept connections on ``http`` only from the namespaces the
  route's ``spec.access`` admits (:func:`llmroute.core.access.ingress_namespaces`; every namespace without it) and
  from the metrics scrapers' namespaces; they may connect only to DNS (53) and to the ports of the providers in the
  compiled config (and of the operator's demand endpoint). Provider hosts are outside the cluster and resolved at run
  time, so egress is restricted by port, not by address.

Client credentials (``spec.access.bearerTokens``): each Secret is mounted (only the named keys, ``optional``: a
missing Secret adds no token and refuses its callers) at ``/var/run/llmroute/access/<secret>``, where the router
re-reads it; the kubelet refreshes the files when the Secret changes, so a rotation needs no rollout and no token
value is in the pod template, the config or its hash.

Provider keys. A key in the route's own namespace is referenced directly (``secretKeyRef``). A pod cannot reference
a Secret in another namespace, and ProviderPolicy is cluster-scoped, so for a key in another namespace (the platform
team's shared key) the operator copies the one key, still base64-encoded and never decoded, into the route-owned
Secret ``<route>-provider-keys`` under the router's env-var name. The value travels only Secret → Secret; it is never
put in a ConfigMap, status, Event or log line. ``secretKeyRef.optional`` is true: a missing key for one provider
must not keep the whole router (and the other providers) from starting; that provider then fails its health check
and is skipped, and the operator reports the missing key.

The keys hash is built from digests only (:func:`value_digest`: SHA-256 of the base64 text, the form the watch cache
keeps for Secrets), passed in by the caller: the builders never see a route-namespace key, only the copied ones they
write into the Secret copy. It is a SHA-256 over a domain prefix, the route's uid (a per-route salt: two routes using
the same key show unrelated hashes) and one ``<env>=<digest>`` line per credential, ``missing`` for a key that is
absent (so adding it later rolls too), cut to 16 hex digits. Its inputs are provider API keys, which are long random
tokens, several per route; a hash of them cannot be turned back into a key or confirmed by guessing, so the
annotation discloses nothing but "the keys changed".

:func:`needs_update` decides whether a live object differs from the desired one, so the same inputs send no patch;
both sides are first reduced by :func:`comparable`, the form the operator's watch cache keeps
(:mod:`llmroute.controller.cache`).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from llmroute.api.base import API_VERSION
from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.core import access
from llmroute.core.router_config import TOKENS_DIR, CredentialRef, RouterConfig
from llmroute.errors import FieldError

CONFIG_HASH_ANNOTATION = "llmroute.io/config-hash"
KEYS_HASH_ANNOTATION = "llmroute.io/keys-hash"
MISSING_KEY = "missing"
"""What :func:`keys_hash` takes for a credential whose key is absent (the optional secretKeyRef resolves to nothing)."""
KEYS_HASH_DOMAIN = "llmroute.io/keys-hash/v1"
DEMAND_URL_ENV = "LLMROUTE_DEMAND_URL"
ROUTER_LIMIT_ENV: dict[str, type[int] | type[float]] = {
    "LLMROUTE_HEAD_TIMEOUT": float,
    "LLMROUTE_BODY_TIMEOUT": float,
    "LLMROUTE_IDLE_TIMEOUT": float,
    "LLMROUTE_MAX_CONNECTIONS": int,
    "LLMROUTE_MAX_HEAD_BYTES": int,
    "LLMROUTE_MAX_HEADERS": int,
    "LLMROUTE_MAX_URL_BYTES": int,
}
"""The router's client limits (:data:`llmroute.router.limits.ENV`, seconds or counts) the operator may set on every
router container."""
CONFIG_KEY = "config.json"
CONFIG_DIR = "/etc/llmroute"
HTTP_PORT = 8080
PRESTOP_SLEEP_SECONDS = 5
"""The router's preStop sleep: the pod leaves the Service's endpoints before SIGTERM closes its listener (the router
then drains in-flight requests for up to 30 s, :data:`llmroute.router.server.DRAIN_TIMEOUT_S`, within the grace)."""
SERVICE_PORT = 80
MANAGED_BY = "llmroute-operator"
APP_NAME = "llmroute-router"
MAX_ROUTE_NAME = 63 - len("-router-config")  # the longest suffix still leaves a valid DNS label

DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMITS = {"memory": "512Mi"}  # no CPU limit: throttling a proxy adds latency to every request

JsonObj = dict[str, Any]
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class RouterSettings:
    """Operator-wide inputs to the builders (from :mod:`llmroute.controller.settings`)."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    termination_grace_seconds: int = 60
    demand_url: str | None = None
    """Where routers report requests they hold for a ModelPool (the operator's ``POST /v1/demand``); the router
    container gets it as ``LLMROUTE_DEMAND_URL``. Not part of the compiled config (nor its hash): where the operator
    listens is not routing. Changing it rolls every router once, as any change to the pod template does."""
    network_policies: bool = False
    """Give every router a NetworkPolicy (see the module notes)."""
    metrics_namespaces: tuple[str, ...] = ()
    """Namespaces whose pods (Prometheus) may scrape routers when NetworkPolicies are on; empty: none besides the
    route's callers."""
    limits: tuple[tuple[str, str], ...] = ()
    """(env var of :data:`ROUTER_LIMIT_ENV`, value) for every router container, in that order; empty: the router's
    own defaults, and no env var at all (an operator upgrade must not roll routers). Not part of the compiled config
    (nor its hash): a deadline is not routing."""


@dataclass(frozen=True)
class ObjectKey:
    """Identifies one object: apiVersion, kind, namespace, name."""

    api_version: str
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class Desired:
    """What a route should own: ``objects`` to create or patch, ``absent`` optional objects that must not exist."""

    objects: tuple[JsonObj, ...]
    absent: tuple[ObjectKey, ...] = ()
    config_hash: str = ""
    copied_keys: tuple[str, ...] = ()
    keys_hash: str = ""


def key_of(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj["metadata"]
    return ObjectKey(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def config_map_name(route: str) -> str:
    return f"{route}-router-config"


def router_name(route: str) -> str:
    return f"{route}-router"


def keys_secret_name(route: str) -> str:
    return f"{route}-provider-keys"


def all_owned_keys(route: str, namespace: str) -> tuple[ObjectKey, ...]:
    """Every object a route may own, whether or not its current spec wants it (deletion removes them all)."""
    return (ObjectKey("v1", "ConfigMap", namespace, config_map_name(route)),
            ObjectKey("apps/v1", "Deployment", namespace, router_name(route)),
            ObjectKey("v1", "Service", namespace, router_name(route)),
            ObjectKey("policy/v1", "PodDisruptionBudget", namespace, router_name(route)),
            ObjectKey("autoscaling/v2", "HorizontalPodAutoscaler", namespace, router_name(route)),
            ObjectKey("v1", "Secret", namespace, keys_secret_name(route)),
            ObjectKey("networking.k8s.io/v1", "NetworkPolicy", namespace, router_name(route)))


def route_errors(route: LLMRoute) -> list[FieldError]:
    """Problems that compile() cannot see but would make the owned objects invalid."""
    name = route.metadata.name
    bad_name = name_error(name, MAX_ROUTE_NAME, f'the router Service is named "{name}-router"')
    errors: list[FieldError] = [bad_name] if bad_name else []
    scaling = route.spec.router.autoscaling
    if scaling is not None and scaling.max_replicas < scaling.min_replicas:
        errors.append(FieldError("spec.router.autoscaling.maxReplicas",
                                 f"{scaling.max_replicas} is less than minReplicas ({scaling.min_replicas})"))
    return errors


def selector_labels(route: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": route}


def labels(route: str) -> dict[str, str]:
    return {**selector_labels(route), "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/component": "router"}


def owner_reference(owner: LLMRoute | ModelPool) -> JsonObj:
    """Controller reference to the LLMRoute or ModelPool: the API server's garbage collector removes owned objects
    with it."""
    return {"apiVersion": API_VERSION, "kind": owner.KIND, "name": owner.metadata.name,
            "uid": owner.metadata.uid or "", "controller": True, "blockOwnerDeletion": True}


def name_error(name: str, max_length: int, derived: str) -> FieldError | None:
    """``metadata.name`` is no DNS-1035 label of at most ``max_length`` characters (``derived``, the Service named
    after it, would be invalid)."""
    if len(name) <= max_length and _DNS_1035.match(name):
        return None
    return FieldError("metadata.name", f'"{name}" must be a DNS-1035 label (lowercase letters, digits, '
                      f"'-', starting with a letter) of at most {max_length} characters, because {derived}")


def foreign_credentials(route: LLMRoute, config: RouterConfig) -> list[CredentialRef]:
    """Provider keys in a namespace other than the route's: these are copied into ``<route>-provider-keys``."""
    ns = route.metadata.namespace
    return [p.credential for p in config.providers
            if p.credential is not None and p.credential.secret_namespace not in (None, ns)]


def value_digest(value: Any) -> str:
    """``sha256:<hex>`` of a ConfigMap/Secret ``data`` value as stored (base64 text for a Secret, never decoded): what
    :func:`comparable` keeps instead of the value, and what :func:`keys_hash` is built from."""
    return "sha256:" + hashlib.sha256(str(value).encode()).hexdigest()


def credential_envs(config: RouterConfig) -> list[str]:
    """The router's key env vars (one per provider with a credential), sorted."""
    return sorted({p.credential.env for p in config.providers if p.credential is not None})


def keys_hash(route: LLMRoute, config: RouterConfig, digests: Mapping[str, str]) -> str:
    """The ``llmroute.io/keys-hash`` annotation: 16 hex digits of a salted SHA-256 over the digest of every key the
    router's env vars reference (``digests``: env var → :func:`value_digest`; an env var without one is
    :data:`MISSING_KEY`). See the module notes on why this discloses nothing about the keys."""
    lines = [KEYS_HASH_DOMAIN, route.metadata.uid or route.metadata.name,
             *(f"{env}={digests.get(env, MISSING_KEY)}" for env in credential_envs(config))]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def desired_objects(route: LLMRoute, config: RouterConfig, settings: RouterSettings,
                    copied: Mapping[str, str] | None = None, key_digests: Mapping[str, str] | None = None) -> Desired:
    """Everything ``route`` should own. ``copied`` maps env-var name → base64 key value read from a foreign Secret;
    ``key_digests`` maps env-var name → :func:`value_digest` of the key in the route-namespace Secret that env var
    references (absent: the key is missing). Keys in ``copied`` are digested here, from the value the Secret copy
    gets, so the keys hash follows exactly what the router's env vars will resolve to."""
    name, ns = route.metadata.name, route.metadata.namespace or "default"
    meta = _meta_factory(route, ns)
    foreign = {c.env for c in foreign_credentials(route, config)}
    digests = {env: d for env, d in (key_digests or {}).items() if env not in foreign}
    digests.update({env: value_digest(v) for env, v in (copied or {}).items() if env in foreign})
    hashed = keys_hash(route, config, digests)
    objects: list[JsonObj] = [_config_map(meta(config_map_name(name)), config),
                              _deployment(meta(router_name(name)), route, config, settings, hashed),
                              _service(meta(router_name(name)), name)]
    absent: list[ObjectKey] = []
    optional: list[tuple[bool, Callable[[], JsonObj], ObjectKey]] = [
        (_wants_pdb(route), lambda: _pdb(meta(router_name(name)), name),
         ObjectKey("policy/v1", "PodDisruptionBudget", ns, router_name(name))),
        (route.spec.router.autoscaling is not None, lambda: _hpa(meta(router_name(name)), route),
         ObjectKey("autoscaling/v2", "HorizontalPodAutoscaler", ns, router_name(name))),
        (bool(foreign_credentials(route, config)), lambda: _keys_secret(meta(keys_secret_name(name)), copied or {}),
         ObjectKey("v1", "Secret", ns, keys_secret_name(name))),
        (settings.network_policies, lambda: network_policy(meta(router_name(name)), route, config, settings),
         ObjectKey("networking.k8s.io/v1", "NetworkPolicy", ns, router_name(name))),
    ]
    for wanted, build, key in optional:
        if wanted:
            objects.append(build())
        else:
            absent.append(key)
    return Desired(objects=tuple(objects), absent=tuple(absent), config_hash=config.content_hash(),
                   copied_keys=tuple(sorted((copied or {}).keys())), keys_hash=hashed)


def _meta_factory(route: LLMRoute, ns: str) -> Callable[[str], JsonObj]:
    def meta(name: str) -> JsonObj:
        return {"name": name, "namespace": ns, "labels": labels(route.metadata.name),
                "ownerReferences": [owner_reference(route)]}
    return meta


def _wants_pdb(route: LLMRoute) -> bool:
    scaling = route.spec.router.autoscaling
    return (scaling.min_replicas if scaling is not None else route.spec.router.replicas) > 1


def _config_map(meta: JsonObj, config: RouterConfig) -> JsonObj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {CONFIG_KEY: config.to_json()}}


def _keys_secret(meta: JsonObj, copied: Mapping[str, str]) -> JsonObj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": dict(sorted(copied.items()))}


def _env(route: LLMRoute, config: RouterConfig) -> list[JsonObj]:
    foreign = {c.env for c in foreign_credentials(route, config)}
    out = []
    for cred in sorted((p.credential for p in config.providers if p.credential), key=lambda c: c.env):
        ref = ({"name": keys_secret_name(route.metadata.name), "key": cred.env} if cred.env in foreign
               else {"name": cred.secret_name, "key": cred.secret_key})
        out.append({"name": cred.env, "valueFrom": {"secretKeyRef": {**ref, "optional": True}}})
    for proxy in sorted((p.proxy.credential for p in config.providers if p.proxy and p.proxy.credential),
                        key=lambda c: c.env):  # egress proxy user:password (a Secret of the route's namespace)
        out.append({"name": proxy.env, "valueFrom": {"secretKeyRef": {
            "name": proxy.secret_name, "key": proxy.secret_key, "optional": True}}})
    return out


def _demand_env(settings: RouterSettings) -> list[JsonObj]:
    return [{"name": DEMAND_URL_ENV, "value": settings.demand_url}] if settings.demand_url else []


def _limits_env(settings: RouterSettings) -> list[JsonObj]:
    return [{"name": name, "value": value} for name, value in settings.limits]


def _resources(route: LLMRoute) -> JsonObj:
    spec = route.spec.router.resources
    requests = {**DEFAULT_REQUESTS, **{k: str(v) for k, v in (spec.requests if spec else {}).items()}}
    limits = {**DEFAULT_LIMITS, **{k: str(v) for k, v in (spec.limits if spec else {}).items()}}
    return {"requests": requests, "limits": limits}


def _probe(path: str, period: int) -> JsonObj:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2,
            "failureThreshold": 3}


def _container(route: LLMRoute, config: RouterConfig, settings: RouterSettings) -> JsonObj:
    return {
        "name": "router",
        "image": route.spec.router.image or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["llmroute"],
        "args": ["router", "--listen", f"0.0.0.0:{HTTP_PORT}", "--config", f"{CONFIG_DIR}/{CONFIG_KEY}"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _env(route, config) + _demand_env(settings) + _limits_env(settings),
        "readinessProbe": _probe("/readyz", 5),
        "livenessProbe": _probe("/healthz", 10),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "resources": _resources(route),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"},
                         *({"name": v, "mountPath": f"{TOKENS_DIR}/{secret}", "readOnly": True}
                           for v, secret in _token_volumes(config))],
    }


def _token_volumes(config: RouterConfig) -> list[tuple[str, str]]:
    """(volume name, Secret name) for each Secret holding bearer tokens of ``spec.access``."""
    secrets = dict.fromkeys(t.secret_name for t in (config.access.bearer_tokens if config.access else ()))
    return [(f"access-tokens-{i}", secret) for i, secret in enumerate(secrets)]


def _token_volume(config: RouterConfig, volume: str, secret: str) -> JsonObj:
    keys = dict.fromkeys(t.secret_key for t in config.access.bearer_tokens if t.secret_name == secret) \
        if config.access else {}
    return {"name": volume, "secret": {"secretName": secret, "optional": True, "defaultMode": 0o440,
                                       "items": [{"key": k, "path": k} for k in keys]}}


def _deployment(meta: JsonObj, route: LLMRoute, config: RouterConfig, settings: RouterSettings,
                keys: str) -> JsonObj:
    name = route.metadata.name
    pod_spec: JsonObj = {
        "automountServiceAccountToken": False,  # the router never talks to the Kubernetes API
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "containers": [_container(route, config, settings)],
        "volumes": [{"name": "config", "configMap": {"name": config_map_name(name)}},
                    {"name": "tmp", "emptyDir": {}},
                    *(_token_volume(config, v, secret) for v, secret in _token_volumes(config))],
    }
    spec: JsonObj = {
        "selector": {"matchLabels": selector_labels(name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": labels(name),
                                  "annotations": {CONFIG_HASH_ANNOTATION: config.content_hash(),
                                                  KEYS_HASH_ANNOTATION: keys}},
                     "spec": pod_spec},
    }
    if route.spec.router.autoscaling is None:
        spec = {"replicas": route.spec.router.replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def _service(meta: JsonObj, route: str) -> JsonObj:
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": str(HTTP_PORT), "prometheus.io/path": "/metrics"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {**meta, "annotations": scrape},
            "spec": {"type": "ClusterIP", "selector": selector_labels(route),
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]}}


DNS_PORT = 53


def egress_ports(config: RouterConfig, settings: RouterSettings) -> list[int]:
    """TCP ports a router connects to: each provider's endpoint port (its scheme's default if unset), a ModelPool's
    pod port, and the operator's demand endpoint."""
    ports = {p.pool.port if p.pool is not None else _url_port(p.endpoint) for p in config.providers}
    if settings.demand_url:
        ports.add(_url_port(settings.demand_url))
    return sorted(ports)


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (80 if parts.scheme == "http" else 443)


def network_policy(meta: JsonObj, route: LLMRoute, config: RouterConfig, settings: RouterSettings) -> JsonObj:
    """The router's NetworkPolicy (see the module notes)."""
    spec = route.spec.access
    callers = access.ingress_namespaces(
        route.metadata.namespace or "default", service_accounts=spec is not None and spec.service_accounts is not None,
        namespaces=spec.allowed_namespaces if spec else (),
        allowed_service_accounts=spec.allowed_service_accounts if spec else ())
    http = [{"port": "http", "protocol": "TCP"}]
    if callers is None:
        ingress: list[JsonObj] = [{"from": [{"namespaceSelector": {}}], "ports": http}]
    else:
        admitted = sorted({*callers, *settings.metrics_namespaces})
        ingress = [{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": admitted}]}}], "ports": http}]
    egress = [{"ports": [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}]},
              {"ports": [{"port": port, "protocol": "TCP"} for port in egress_ports(config, settings)]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
            "spec": {"podSelector": {"matchLabels": selector_labels(route.metadata.name)},
                     "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress}}


def _pdb(meta: JsonObj, route: str) -> JsonObj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector_labels(route)}}}


def _hpa(meta: JsonObj, route: LLMRoute) -> JsonObj:
    scaling = route.spec.router.autoscaling
    assert scaling is not None
    target = {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization_percent}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": router_name(route.metadata.name)},
                     "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]}}


def needs_update(desired: Any, live: Any) -> bool:
    """True unless every field of ``desired`` is present and equal in ``live``.

    Fields the API server adds (defaults, status, resourceVersion) are ignored: a dict matches when it holds at least
    the desired keys; a list must have the same length with each item matching. Numbers written as strings by the
    server (quantities) compare by their text.
    """
    if isinstance(desired, dict):
        return not isinstance(live, dict) or any(needs_update(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (not isinstance(live, list) or len(live) != len(desired)
                or any(needs_update(d, v) for d, v in zip(desired, live, strict=True)))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is not live
    if isinstance(desired, int | float) and isinstance(live, str):
        return str(desired) != live
    return bool(desired != live)


COMPARED_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences")
DIGESTED_KINDS = ("ConfigMap", "Secret")


def comparable(obj: Mapping[str, Any]) -> JsonObj:
    """The part of an owned object that reconciliation compares and the watch cache keeps (a deep copy).

    Identity, labels, annotations, owner references, ``spec``, a Secret's ``type``, the Deployment's ``status`` (its
    readiness), and for ConfigMaps and Secrets ``dataDigests`` - a SHA-256 per ``data`` value instead of the value:
    the cache never holds a provider key, and a large compiled config costs 71 bytes. Idempotent (a comparable form
    is its own comparable form), so a cached object and a full one from the API compare alike.
    """
    meta = obj.get("metadata") or {}
    out: JsonObj = {k: copy.deepcopy(obj[k]) for k in ("apiVersion", "kind", "spec", "type", "dataDigests") if k in obj}
    out["metadata"] = {k: copy.deepcopy(meta[k]) for k in COMPARED_METADATA if k in meta}
    if "data" in obj or (obj.get("kind") in DIGESTED_KINDS and "dataDigests" not in obj):
        out["dataDigests"] = {k: value_digest(v) for k, v in (obj.get("data") or {}).items()}
    if obj.get("kind") == "Deployment" and "status" in obj:
        out["status"] = copy.deepcopy(obj["status"])
    return out


def owned_by(live: Mapping[str, Any], uid: str) -> bool:
    """Whether ``live`` carries an ownerReference to the object with ``uid``."""
    refs = live.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)
