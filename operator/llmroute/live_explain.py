"""``llmroute explain --cluster``: read a route's live state from the cluster, read-only, and explain it.

Owns the cluster side of the live explain: connecting with the user's kubeconfig (``--kubeconfig``, ``--context``,
``-n``; a pod's service account when there is no kubeconfig), and GETs of exactly what the explanation needs - the
LLMRoute, the ProviderPolicy it references (cluster-scoped), the ModelPools that serve its backends and the router
Deployment the operator names ``<route>-router`` (:func:`llmroute.core.manifests.router_name`). Nothing is written,
listed cluster-wide or watched, and no Secret is read: the file mode does not check Secrets either, and a key's
value must never pass through here. The decisions stay pure: :func:`llmroute.core.explain.explain_route` with the
policy status' health, and :mod:`llmroute.core.explain_live` for the live fields.

Errors are one line each (:class:`ClusterError`, exit 1 in the CLI): no kubeconfig, an unknown context, an
unreachable or rejecting API server, the route or its policy not found, RBAC forbidding a read of the route or the
policy. A ModelPool or the router Deployment the user may not read is shown as unknown instead (an application team
often may not read the GPU team's namespace); the rest of the answer does not depend on it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from pydantic import ValidationError

from llmroute.api.base import API_VERSION, GROUP
from llmroute.api.llm_route import LLMRoute
from llmroute.api.model_pool import ModelPool
from llmroute.api.provider_policy import ProviderPolicy
from llmroute.core.explain import RouteExplanation, check_providers, down_per_status, explain_route
from llmroute.core.explain_live import LiveState, live_state, pool_refs, pool_states
from llmroute.core.manifests import router_name
from llmroute.documents import first_field_error
from llmroute.errors import InputError, LoadError

REQUEST_TIMEOUT_S = 10.0
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")  # token, ca.crt, namespace in a pod
USER_AGENT = "llmroute-explain"
MAX_NAME = 253
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
JsonObj = dict[str, Any]
M = TypeVar("M", LLMRoute, ProviderPolicy, ModelPool)


class ClusterError(Exception):
    """The cluster cannot answer what explain needs; ``str()`` is one line naming what is missing."""


class Forbidden(ClusterError):
    """RBAC denied a read; ``what`` is the read, e.g. ``get modelpools.llmroute.io in namespace "llm-serving"``."""

    def __init__(self, who: str, what: str) -> None:
        super().__init__(f"forbidden: {who} may not {what} (HTTP 403; ask for RBAC get on it)")
        self.what = what


@dataclass
class Connection:
    """An API client, the namespace to look in and who is asking (for error messages)."""

    client: kubernetes.client.ApiClient
    namespace: str
    who: str

    def get(self, path: str, what: str) -> JsonObj | None:
        """GET ``path``; None on 404. Raises :class:`Forbidden` on 403, :class:`ClusterError` otherwise."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        try:
            _, url, headers, _, _ = self.client.param_serialize(
                method="GET", resource_path=path, header_params=headers, auth_settings=["BearerToken"]
            )
            resp = self.client.call_api("GET", url, header_params=headers, _request_timeout=REQUEST_TIMEOUT_S)
            data = resp.read()  # type: ignore[no-untyped-call]
        except Exception as exc:  # connection refused, DNS, TLS, timeout: say which, no traceback
            host = self.client.configuration.host
            raise ClusterError(f"cannot reach the API server at {host}: {_why(exc)}") from None
        if resp.status == 404:
            return None
        if resp.status == 403:
            raise Forbidden(self.who, what)
        if resp.status == 401:
            raise ClusterError(f"unauthorized: the API server rejected the credentials of {self.who} (HTTP 401)")
        if resp.status >= 400:
            raise ClusterError(f"{what}: HTTP {resp.status} from the API server")
        try:
            parsed = json.loads(data)
        except ValueError:
            raise ClusterError(f"{what}: the API server's answer is not JSON") from None
        if not isinstance(parsed, dict):
            raise ClusterError(f"{what}: the API server's answer is not an object")
        return parsed


def connect(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    env: Mapping[str, str] = os.environ,
    service_account: Path = SERVICE_ACCOUNT,
) -> Connection:
    """A client from ``kubeconfig`` (default: ``KUBECONFIG`` or ``~/.kube/config``), else the pod's service account.
    The namespace is ``namespace``, else the context's (the service account's in a pod), else ``default``."""
    path = kubeconfig or _default_kubeconfig(env)
    config = kubernetes.client.Configuration()
    if path is None:
        if context or not env.get("KUBERNETES_SERVICE_HOST"):
            where = env.get("KUBECONFIG") or "~/.kube/config"
            raise ClusterError(f"no kubeconfig: {where} does not exist (pass --kubeconfig, or run in a cluster)")
        try:
            kubernetes.config.incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
                token_filename=str(service_account / "token"),
                cert_filename=str(service_account / "ca.crt"),
                environ=env,
            ).load_and_set(config)
        except Exception as exc:
            raise ClusterError(f"no kubeconfig and no usable service account in this pod: {exc}") from None
        sa_ns = service_account / "namespace"
        ns = namespace or (sa_ns.read_text().strip() if sa_ns.is_file() else "default")
        return Connection(_client(config), ns, "this pod's service account")
    if kubeconfig and not Path(kubeconfig).expanduser().is_file():
        raise ClusterError(f"kubeconfig {kubeconfig}: no such file")
    name, ctx_ns = _context(path, context)
    try:
        kubernetes.config.load_kube_config(
            config_file=path, context=name, client_configuration=config, persist_config=False
        )  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise ClusterError(f"kubeconfig {path}, context {name}: {_first_line(exc)}") from None
    return Connection(_client(config), namespace or ctx_ns or "default", f'the user of context "{name}"')


def _default_kubeconfig(env: Mapping[str, str]) -> str | None:
    """``KUBECONFIG`` (a path list, as kubectl reads it) or ``~/.kube/config``, if any of its files exists."""
    raw = env.get("KUBECONFIG") or "~/.kube/config"
    paths = [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    return raw if any(p.is_file() for p in paths) else None


def _context(path: str, wanted: str | None) -> tuple[str, str | None]:
    """The context to use (``wanted`` or the current one) and its namespace, from the (merged) kubeconfig."""
    try:
        merged = kubernetes.config.kube_config.KubeConfigMerger(path).config.value  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise ClusterError(f"kubeconfig {path}: {_first_line(exc)}") from None
    merged = merged if isinstance(merged, dict) else {}
    contexts = [getattr(c, "value", c) for c in merged.get("contexts") or []]  # merged entries are ConfigNodes
    by_name = {c.get("name"): c for c in contexts if isinstance(c, dict)}
    name = wanted or merged.get("current-context")
    if not name:
        raise ClusterError(f"kubeconfig {path} has no current-context (pass --context)")
    if name not in by_name:
        known = ", ".join(sorted(str(n) for n in by_name)) or "none"
        raise ClusterError(f'kubeconfig {path} has no context "{name}" (contexts: {known})')
    ns = (by_name[name].get("context") or {}).get("namespace")
    return str(name), str(ns) if ns else None


def _client(config: kubernetes.client.Configuration) -> kubernetes.client.ApiClient:
    config.retries = 0  # one attempt per read: an unreachable server is reported at once, as kubectl does
    client = kubernetes.client.ApiClient(config)
    client.user_agent = USER_AGENT
    return client


def _why(exc: BaseException) -> str:
    """The innermost OS-level reason (``Connection refused``), else the exception's type."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, TimeoutError) or "Timeout" in type(seen).__name__:
            return "timed out"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
    return type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class Found:
    """What the cluster holds for one route."""

    route: LLMRoute
    policy: ProviderPolicy
    pools: dict[tuple[str, str], ModelPool] = field(default_factory=dict)
    pool_errors: dict[tuple[str, str], str] = field(default_factory=dict)
    deployment: JsonObj | None = None
    deployment_error: str | None = None


def read(conn: Connection, name: str) -> Found:
    """GET the route ``name`` in ``conn.namespace``, its ProviderPolicy, its ModelPools and its router Deployment."""
    ns, prefix = _name(conn.namespace, "namespace"), f"/apis/{API_VERSION}"
    _name(name, "LLMRoute name")
    doc = conn.get(f"{prefix}/namespaces/{ns}/llmroutes/{name}", f'get llmroutes.{GROUP} "{name}" in namespace "{ns}"')
    if doc is None:
        raise ClusterError(_route_not_found(conn, name))
    route = _parse(LLMRoute, doc, f"LLMRoute {ns}/{name} (in the cluster)")
    ref = _name(route.spec.policy_ref.name, "spec.policyRef.name")
    doc = conn.get(f"{prefix}/providerpolicies/{ref}", f'get providerpolicies.{GROUP} "{ref}"')
    if doc is None:
        raise ClusterError(
            f'ProviderPolicy "{ref}" not found (the policy LLMRoute {ns}/{name} names in spec.policyRef)'
        )
    found = Found(route, _parse(ProviderPolicy, doc, f"ProviderPolicy {ref} (in the cluster)"))
    for pool_ns, pool in pool_refs(route, found.policy):
        _name(pool_ns, "pool namespace")
        _name(pool, "pool name")
        try:
            doc = conn.get(
                f"{prefix}/namespaces/{pool_ns}/modelpools/{pool}",
                f'get modelpools.{GROUP} "{pool}" in namespace "{pool_ns}"',
            )
        except Forbidden as exc:
            found.pool_errors[pool_ns, pool] = f"forbidden: may not {exc.what}"
            continue
        if doc is not None:
            found.pools[pool_ns, pool] = _parse(ModelPool, doc, f"ModelPool {pool_ns}/{pool} (in the cluster)")
    deployment = router_name(name)
    try:
        found.deployment = conn.get(
            f"/apis/apps/v1/namespaces/{ns}/deployments/{deployment}",
            f'get deployments.apps "{deployment}" in namespace "{ns}"',
        )
    except Forbidden as exc:
        found.deployment_error = f"forbidden: may not {exc.what}"
    return found


def _name(value: str, what: str) -> str:
    """``value`` if it is a Kubernetes object name (DNS-1123 subdomain): it goes into a URL path, where a "/" or
    ".." would make it another object's."""
    if len(value) > MAX_NAME or not _DNS_1123.match(value):
        raise InputError(f'{what} "{value}" is not a Kubernetes name (lowercase letters, digits, "-" and ".")')
    return value


def _route_not_found(conn: Connection, name: str) -> str:
    """Why the route is missing: not there (naming the routes that are), or no LLMRoute CRD at all."""
    ns = conn.namespace
    what = f'LLMRoute "{name}" not found in namespace "{ns}"'
    try:
        listed = conn.get(f"/apis/{API_VERSION}/namespaces/{ns}/llmroutes", f"list llmroutes.{GROUP}")
    except Forbidden:
        return what
    if listed is None:
        return f"{what}: the API server serves no llmroutes.{GROUP} (are the llmroute CRDs installed?)"
    names = sorted(str((i.get("metadata") or {}).get("name")) for i in listed.get("items") or [] if isinstance(i, dict))
    return f"{what} (found there: {', '.join(names) or 'none'})"


def _parse(model: type[M], doc: JsonObj, where: str) -> M:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise LoadError(where, None, first_field_error(exc)) from None


@dataclass(frozen=True)
class LiveExplanation:
    explanation: RouteExplanation
    live: LiveState

    def to_dict(self) -> JsonObj:
        return {**self.explanation.to_dict(), "live": self.live.to_dict()}


def explain_found(
    found: Found,
    data_class: str | None,
    down: Sequence[str] = (),
    up: Sequence[str] = (),
    *,
    ignore_health: bool = False,
    model: str | None = None,
    text: str | None = None,
) -> LiveExplanation:
    """The explanation of what was read, shaped by the policy status' health unless ``ignore_health``: providers it
    has Down or Misconfigured are treated as down, except those in ``up``; those in ``down`` are down anyway."""
    policy = found.policy
    for flag, names in (("--down", down), ("--up", up)):
        check_providers(policy, flag, names)
    both = sorted(set(down) & set(up))
    if both:
        raise InputError(f'"{both[0]}" is both in --down and --up')
    health = {h.name: h for h in (policy.status.providers if policy.status else [])}
    status_down = frozenset() if ignore_health else down_per_status(health, frozenset(up))
    explained = explain_route(
        found.route,
        policy,
        data_class,
        frozenset(down),
        model=model,
        text=text,
        pools=found.pools,
        health=health,
        status_down=status_down,
        missing_pool="state unknown: see ModelPools",
    )
    refs = pool_refs(found.route, policy)
    live = live_state(
        found.route,
        policy,
        deployment=found.deployment,
        deployment_error=found.deployment_error,
        pools=pool_states(refs, found.pools, found.pool_errors),
        status_down=explained.status_down,
        assumed_up=up,
        health_ignored=ignore_health,
    )
    return LiveExplanation(explained, live)
