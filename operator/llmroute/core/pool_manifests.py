"""Desired Kubernetes objects for one ModelPool, as plain dicts. Pure: no I/O, no clock, no client types.

The operator applies :func:`owned_objects` for every pool (through :mod:`llmroute.controller.kube`, like the router's
objects from :mod:`llmroute.core.manifests`); the unit tests validate every object against the Kubernetes 1.30 and
1.35 schemas. Every object carries a controller ownerReference to the ModelPool (the garbage collector removes them
with it), the ``app.kubernetes.io/*`` labels and ``llmroute.io/pool: <pool>`` (:data:`llmroute.core.pools.POOL_LABEL`).

What a pool owns:

* PersistentVolumeClaim ``<pool>-model-cache``, only with ``spec.cache.size``: the weights survive pod restarts and
  scale-to-zero, so only the first pod ever downloads them. Owned by the pool: deleting the pool deletes the cache.
* Deployment ``<pool>``: vLLM, shaped for slow GPU loads (below). ``replicas`` is an argument: the operator passes
  its autoscaler's decision (:func:`llmroute.core.scaling.decide`), so nothing else sizes the Deployment and nothing
  here fights the scaler.
* Service ``<pool>`` (ClusterIP, port 8000 ``http``): the pool's endpoint for clients that do not pick pods.
* Service ``<pool>-pods`` (headless; ``publishNotReadyAddresses`` at its default, false): its DNS name resolves to
  the **ready** pods only; routers resolve it and pick a pod by load (:mod:`llmroute.router.pools`).

The objects hold no field the API server drops when it stores them (a false bool, an empty list or map, an empty
env value): :func:`llmroute.core.manifests.needs_update` would otherwise see a difference and patch on every pass.

The vLLM pod:

* Command. ``vllm/vllm-openai`` images have ``ENTRYPOINT ["vllm", "serve"]`` (``vllm serve [model_tag] [options]``),
  so the container sets ``args`` only, keeping the image's entrypoint (images that wrap vLLM keep working). The model
  is passed as ``--model`` rather than the positional tag: both entrypoints ever shipped (``vllm serve`` and the older
  ``python -m vllm.entrypoints.openai.api_server``) accept it. The operator sets ``--model``, ``--served-model-name``,
  ``--port``, ``--tensor-parallel-size`` and ``--shutdown-timeout``; ``spec.engineArgs`` may not set them again
  (:func:`engine_arg_errors`), because argparse would silently keep whichever came last.
* Resources. ``nvidia.com/gpu`` limits equal requests (the device plugin requires it), omitted for a CPU pool
  (``gpus: 0``); cpu and memory requests equal limits when set (Guaranteed QoS for the memory a load maps).
  ``/dev/shm`` is a memory-backed emptyDir (NCCL for tensor parallelism) of ``resources.shmSize``.
* Weights cache at ``/root/.cache/huggingface`` (the path vLLM's Kubernetes guide mounts): the claim ``claimName``,
  the created claim, or an emptyDir (``sizeLimit`` when set). ``HF_HOME`` points there too, so an image that runs
  as another user (another ``$HOME``) still reads and writes the mounted cache rather than an empty home directory.
* Hub token: ``HF_TOKEN`` and ``HUGGING_FACE_HUB_TOKEN`` (vLLM's docs use one, KServe the other; set both) from the
  Secret key ``hubTokenSecretRef``, not optional: a pool of gated weights without its token should fail at once,
  not after pulling a 10 GB image. ``spec.env`` follows; it may not repeat a variable set here (:func:`env_errors`).
* Probes, all on ``GET /health`` (vLLM binds its port only once the weights are loaded, then answers 200, or 503
  when the engine is dead); each has a short ``timeoutSeconds`` so a hanging ``/health`` counts as a failure:

  - startupProbe every 2 s, timeout 2 s, ``failureThreshold`` = ceil(``startupTimeout`` / 2): the load budget is
    exactly ``startupTimeout`` (from container start; image pulls are not counted), and a loaded pod is seen within
    2 s, which a cold start that routers are holding requests for is waiting on.
  - readinessProbe every 5 s, timeout 3 s, 3 failures: a hung or dead engine leaves the headless Service (and so
    the routers' pick) within about 15 s, while one slow answer in a load spike does not eject a busy pod and pile
    its load onto the others.
  - livenessProbe every 30 s, timeout 5 s, 3 failures: a restart reloads the weights (minutes of lost capacity), so
    only an engine dead or hung for about 90 s is restarted.
* Shutdown. ``preStop`` sleeps :data:`PRESTOP_SLEEP_SECONDS` (the native ``sleep`` action, no binary needed in the
  image): a terminating pod leaves the EndpointSlices at once, but routers see that through DNS (the headless
  Service's records and their TTL) and their own re-resolution, so SIGTERM waits until they have stopped sending.
  On SIGTERM vLLM rejects new requests and, with ``--shutdown-timeout`` = ``drainTimeout`` (vLLM >= 0.18; without it
  vLLM aborts running requests at once), lets running streams finish. ``terminationGracePeriodSeconds`` = preStop +
  ``drainTimeout`` + :data:`EXIT_MARGIN_SECONDS`, so the kubelet does not SIGKILL the engine while it is still
  finishing streams or releasing the GPUs.
* ``enableServiceLinks: false``: a Service named ``vllm`` in the namespace would otherwise inject ``VLLM_PORT``
  (``tcp://...``), which vLLM reads as its own setting and fails on. ``automountServiceAccountToken: false``: vLLM
  never talks to the Kubernetes API.
* Placement: ``nodeSelector``, ``spec.effective_tolerations`` (default: tolerate the ``nvidia.com/gpu`` taint),
  ``affinity`` and ``runtimeClassName`` as given.
* Pod annotations ``prometheus.io/scrape|port|path`` for annotation-based scrapers (vLLM's ``/metrics`` on 8000).

Rollout strategy: RollingUpdate with ``maxSurge: 0, maxUnavailable: 1``. A surge pod needs a GPU the pool does not
hold: on a full GPU node pool it stays Pending (with ``maxUnavailable: 0`` the rollout then stalls for good), and
with a cluster autoscaler it provisions a GPU node for a few minutes of overlap; with a ReadWriteOnce cache it also
has to land on the one node that mounts the claim. Replacing one pod at a time in place always progresses on the
GPUs the pool already has; the cost is one replica's capacity while its replacement loads (at one replica, the load
time: routers hold requests or fail over to the hosted providers meanwhile, which is their job). Rollouts are rare:
replicas, scaling and provider health never touch the pod template. ``progressDeadlineSeconds`` = the startup
budget + :data:`PROGRESS_SLACK_SECONDS` (GPU node provisioning and a ~10 GB image pull), so a long load is not
reported as a failed rollout.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from llmroute.api.base import parse_duration
from llmroute.api.model_pool import GPU_RESOURCE, VLLM_PORT, ModelPool, ModelPoolSpec
from llmroute.core.manifests import MANAGED_BY, name_error, owner_reference
from llmroute.core.pools import POOL_LABEL, pods_service_name, service_name
from llmroute.errors import FieldError

JsonObj = dict[str, Any]

APP_NAME = "llmroute-vllm"
COMPONENT = "model-pool"
PART_OF = "llmroute"
CONTAINER = "vllm"
PORT_NAME = "http"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
CACHE_DIR = "/root/.cache/huggingface"
SHM_DIR = "/dev/shm"
CACHE_VOLUME = "model-cache"
SHM_VOLUME = "shm"
TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
HF_HOME = "HF_HOME"

STARTUP_PERIOD_SECONDS = 2
STARTUP_TIMEOUT_SECONDS = 2
READINESS = {"periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3, "successThreshold": 1}
LIVENESS = {"periodSeconds": 30, "timeoutSeconds": 5, "failureThreshold": 3}
PRESTOP_SLEEP_SECONDS = 15
"""Routers learn that a pod is leaving through the headless Service's DNS: EndpointSlice update (~1 s), record TTL
(CoreDNS: 5 s) and their re-resolution (every second, :mod:`llmroute.router.pod_discovery`); 15 s covers that twice
over (KServe sleeps 15 s for its endpoint picker)."""
EXIT_MARGIN_SECONDS = 10
"""Grace beyond preStop + drain: vLLM aborts what is left, stops its engine processes and frees the GPUs."""
PROGRESS_SLACK_SECONDS = 900

MAX_POOL_NAME = 63 - len("-pods")  # the headless Service name must still be a DNS label

MANAGED_FLAGS: dict[str, str] = {
    "--model": "from spec.model",
    "--served-model-name": "from spec.servedModelName, default spec.model",
    "--port": f"always {VLLM_PORT}",
    "--tensor-parallel-size": "from spec.tensorParallelSize, default resources.gpus",
    "--shutdown-timeout": "from spec.drainTimeout",
}
"""vLLM flags the operator sets, and where their value comes from."""
FLAG_ALIASES = {"-tp": "--tensor-parallel-size"}


class PoolSpecError(ValueError):
    """The pool's spec cannot be turned into objects; ``errors`` names every offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


# --- names and labels ---------------------------------------------------------------------------------------------


def cache_claim_name(pool: str) -> str:
    return f"{pool}-model-cache"


def selector_labels(pool: str) -> dict[str, str]:
    """What the Deployment and both Services select on (immutable in a Deployment: never add to it)."""
    return {"app.kubernetes.io/name": APP_NAME, POOL_LABEL: pool}


def labels(pool: str) -> dict[str, str]:
    return {**selector_labels(pool), "app.kubernetes.io/instance": pool, "app.kubernetes.io/component": COMPONENT,
            "app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": MANAGED_BY}


def _meta(pool: ModelPool, name: str) -> JsonObj:
    return {"name": name, "namespace": pool.metadata.namespace or "default", "labels": labels(pool.metadata.name),
            "ownerReferences": [owner_reference(pool)]}


# --- checks -------------------------------------------------------------------------------------------------------


def _flag(arg: str) -> str | None:
    """The managed flag ``arg`` sets (``--port=1``, ``--port 1`` in one item, ``--tensor_parallel_size``, ``-tp``)."""
    head = arg.strip().split("=", 1)[0].split(" ", 1)[0]
    if head.startswith("--"):
        head = "--" + head[2:].replace("_", "-")
    head = FLAG_ALIASES.get(head, head)
    return head if head in MANAGED_FLAGS else None


def _engine_arg_field_errors(spec: ModelPoolSpec) -> list[FieldError]:
    errors = []
    for i, arg in enumerate(spec.engine_args):
        flag = _flag(arg)
        if flag is not None:
            errors.append(FieldError(f"spec.engineArgs[{i}]", f'"{arg}" sets {flag}, which the operator sets '
                                     f"({MANAGED_FLAGS[flag]}); remove it"))
    return errors


def engine_arg_errors(spec: ModelPoolSpec) -> list[str]:
    """One ``spec.engineArgs[i]: ...`` line per engine argument that repeats a flag the operator sets."""
    return [str(e) for e in _engine_arg_field_errors(spec)]


def _managed_envs(spec: ModelPoolSpec) -> dict[str, str]:
    managed = {HF_HOME: f"the operator (the cache mount, {CACHE_DIR})"}
    if spec.hub_token_secret_ref is not None:
        managed.update(dict.fromkeys(TOKEN_ENVS, "spec.hubTokenSecretRef"))
    return managed


def _env_field_errors(spec: ModelPoolSpec) -> list[FieldError]:
    managed = _managed_envs(spec)
    return [FieldError(f"spec.env[{i}]", f"{e.name} is set by {managed[e.name]}; remove it")
            for i, e in enumerate(spec.env) if e.name in managed]


def env_errors(spec: ModelPoolSpec) -> list[str]:
    """One ``spec.env[i]: ...`` line per variable that repeats one the operator sets."""
    return [str(e) for e in _env_field_errors(spec)]


def pool_errors(pool: ModelPool) -> list[FieldError]:
    """Problems the API schema cannot see but that would make the owned objects invalid or ambiguous."""
    name = pool.metadata.name
    bad_name = name_error(name, MAX_POOL_NAME, f'the pool\'s headless Service is named "{pods_service_name(name)}"')
    return ([bad_name] if bad_name else []) + _engine_arg_field_errors(pool.spec) + _env_field_errors(pool.spec)


# --- the pod ------------------------------------------------------------------------------------------------------


def _seconds(duration: str) -> int:
    return math.ceil(parse_duration(duration))


def startup_failure_threshold(spec: ModelPoolSpec) -> int:
    """Startup probe failures allowed: ``periodSeconds`` x this covers ``startupTimeout``."""
    return max(1, math.ceil(parse_duration(spec.startup_timeout) / STARTUP_PERIOD_SECONDS))


def termination_grace_seconds(spec: ModelPoolSpec) -> int:
    return PRESTOP_SLEEP_SECONDS + _seconds(spec.drain_timeout) + EXIT_MARGIN_SECONDS


def vllm_args(spec: ModelPoolSpec) -> list[str]:
    """The container's args (after the image's ``vllm serve`` entrypoint): the managed flags, then engineArgs."""
    managed = {"--model": spec.model, "--served-model-name": spec.served_name, "--port": str(VLLM_PORT),
               "--tensor-parallel-size": str(spec.tensor_parallel),
               "--shutdown-timeout": str(_seconds(spec.drain_timeout))}
    return [*(item for flag, value in managed.items() for item in (flag, value)), *spec.engine_args]


def _resources(spec: ModelPoolSpec) -> JsonObj:
    res = spec.resources
    amounts = {k: str(v) for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v is not None}
    if res.gpus > 0:
        amounts[GPU_RESOURCE] = str(res.gpus)
    return {"requests": amounts, "limits": dict(amounts)} if amounts else {}


def _env(spec: ModelPoolSpec) -> list[JsonObj]:
    env: list[JsonObj] = [{"name": HF_HOME, "value": CACHE_DIR}]
    ref = spec.hub_token_secret_ref
    if ref is not None:
        env += [{"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
                for name in TOKEN_ENVS]
    return env + [{"name": e.name, "value": e.value} if e.value else {"name": e.name} for e in spec.env]


def _probe(**timing: int) -> JsonObj:
    return {"httpGet": {"path": HEALTH_PATH, "port": PORT_NAME}, **timing}


def _container(spec: ModelPoolSpec) -> JsonObj:
    return {
        "name": CONTAINER,
        "image": spec.image,
        "args": vllm_args(spec),
        "ports": [{"name": PORT_NAME, "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": _resources(spec),
        "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": CACHE_DIR}, {"name": SHM_VOLUME, "mountPath": SHM_DIR}],
        "startupProbe": _probe(periodSeconds=STARTUP_PERIOD_SECONDS, timeoutSeconds=STARTUP_TIMEOUT_SECONDS,
                               failureThreshold=startup_failure_threshold(spec)),
        "readinessProbe": _probe(**READINESS),
        "livenessProbe": _probe(**LIVENESS),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
    }


def _cache_volume(pool: ModelPool) -> JsonObj:
    cache = pool.spec.cache
    if cache.claim_name is not None:
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache.claim_name}}
    if cache.size is not None:
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache_claim_name(pool.metadata.name)}}
    empty: JsonObj = {} if cache.size_limit is None else {"sizeLimit": str(cache.size_limit)}
    return {"name": CACHE_VOLUME, "emptyDir": empty}


def _pod_spec(pool: ModelPool) -> JsonObj:
    spec = pool.spec
    pod: JsonObj = {
        "enableServiceLinks": False,  # a Service named vllm would inject VLLM_PORT, which vLLM reads
        "automountServiceAccountToken": False,  # vLLM never talks to the Kubernetes API
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        "containers": [_container(spec)],
        "volumes": [_cache_volume(pool),
                    {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": str(spec.resources.shm_size)}}],
    }
    if spec.effective_tolerations:
        pod["tolerations"] = [t.wire() for t in spec.effective_tolerations]
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.affinity is not None:
        pod["affinity"] = copy.deepcopy(spec.affinity)
    if spec.runtime_class_name is not None:
        pod["runtimeClassName"] = spec.runtime_class_name
    return pod


# --- the objects --------------------------------------------------------------------------------------------------


def deployment(pool: ModelPool, replicas: int) -> JsonObj:
    """The vLLM Deployment ``<pool>`` at ``replicas`` (the autoscaler's decision). Raises :class:`PoolSpecError`
    naming each field (``spec.engineArgs[i]``, ``spec.env[i]``, ``metadata.name``) the objects cannot be built from."""
    errors = pool_errors(pool)
    if errors:
        raise PoolSpecError(errors)
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, not {replicas}")
    name = pool.metadata.name
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": str(VLLM_PORT), "prometheus.io/path": METRICS_PATH}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(pool, name), "spec": {
        "replicas": replicas,
        "selector": {"matchLabels": selector_labels(name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        "progressDeadlineSeconds": _seconds(pool.spec.startup_timeout) + PROGRESS_SLACK_SECONDS,
        "template": {"metadata": {"labels": labels(name), "annotations": scrape}, "spec": _pod_spec(pool)},
    }}


def _ports() -> list[JsonObj]:
    return [{"name": PORT_NAME, "port": VLLM_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}]


def service(pool: ModelPool) -> JsonObj:
    """ClusterIP Service ``<pool>`` on port 8000 (``http``)."""
    name = pool.metadata.name
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(pool, service_name(name)),
            "spec": {"type": "ClusterIP", "selector": selector_labels(name), "ports": _ports()}}


def pods_service(pool: ModelPool) -> JsonObj:
    """Headless Service ``<pool>-pods``: DNS answers with the ready pods' addresses, which routers pick from.

    ``publishNotReadyAddresses`` is left out, not written as ``false``: false is the default, and the API server
    drops a false bool, so writing it would make :func:`llmroute.core.manifests.needs_update` patch forever."""
    name = pool.metadata.name
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(pool, pods_service_name(name)),
            "spec": {"clusterIP": "None", "selector": selector_labels(name), "ports": _ports()}}


def cache_claim(pool: ModelPool) -> JsonObj | None:
    """The PVC ``<pool>-model-cache`` when ``spec.cache.size`` is set; None otherwise."""
    cache = pool.spec.cache
    if cache.size is None:
        return None
    spec: JsonObj = {"accessModes": [cache.access_mode.value], "resources": {"requests": {"storage": str(cache.size)}}}
    if cache.storage_class_name is not None:
        spec["storageClassName"] = cache.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(pool, cache_claim_name(pool.metadata.name)), "spec": spec}


def owned_objects(pool: ModelPool, replicas: int) -> list[JsonObj]:
    """Everything the operator applies for ``pool``, in apply order (the claim before the pods that mount it)."""
    claim = cache_claim(pool)
    return [*([claim] if claim is not None else []), service(pool), pods_service(pool), deployment(pool, replicas)]
