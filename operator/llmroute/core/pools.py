"""Where a ModelPool is reached: the names every component derives from a pool's name and namespace alone.

The operator creates the Services under these names (:mod:`llmroute.core.pool_manifests`), ``compile()`` points a
pool provider's endpoint at the pool's Service, and routers resolve the headless Service to find the ready pods and
pick one by load (:mod:`llmroute.router.pools`). Deriving names instead of looking them up is what lets a router find
a pool without any Kubernetes API access.
"""

from __future__ import annotations

from collections.abc import Callable

from llmroute.api.base import parse_duration
from llmroute.api.model_pool import VLLM_PORT, ModelPoolSpec
from llmroute.core.scaling import ScalingPolicy

POOL_LABEL = "llmroute.io/pool"
"""Label on every object of a pool (Deployment, pods, Services, PVC): ``llmroute.io/pool: <ModelPool name>``."""
CLUSTER_DOMAIN = "svc.cluster.local"


def service_name(pool: str) -> str:
    """The pool's ClusterIP Service (what a client without pod picking would call)."""
    return pool


def pods_service_name(pool: str) -> str:
    """The pool's headless Service: its DNS name resolves to the addresses of the **ready** pods only."""
    return f"{pool}-pods"


def endpoint(pool: str, namespace: str) -> str:
    """OpenAI base URL of the pool's Service."""
    return f"http://{service_name(pool)}.{namespace}.{CLUSTER_DOMAIN}:{VLLM_PORT}/v1"


def pods_host(pool: str, namespace: str) -> str:
    """DNS name routers resolve to find the pool's ready pods."""
    return f"{pods_service_name(pool)}.{namespace}.{CLUSTER_DOMAIN}"


def key(pool: str, namespace: str) -> str:
    """``<namespace>/<name>``: how demand, metrics and local mode name a pool."""
    return f"{namespace}/{pool}"


def scaling_policy(spec: ModelPoolSpec, timer: Callable[[float], float] = float) -> ScalingPolicy:
    """What :func:`llmroute.core.scaling.decide` needs from a pool's spec; ``timer`` maps each duration in seconds
    (local mode compresses them to fit a drill; the operator keeps them)."""
    prewarm = spec.prewarm
    return ScalingPolicy(
        min_replicas=spec.replicas.min, max_replicas=spec.replicas.max,
        target_waiting_per_replica=spec.scaling.target_waiting_per_replica,
        kv_cache_ceiling=spec.scaling.kv_cache_ceiling_percent / 100,
        scale_down_delay_s=timer(parse_duration(spec.scaling.scale_down_delay)),
        idle_to_zero_s=timer(parse_duration(spec.scaling.idle_to_zero)),
        prewarm_replicas=prewarm.replicas if prewarm is not None else 0,
        hold_after_recovery_s=timer(parse_duration(prewarm.hold_after_recovery)) if prewarm is not None else 0.0,
    )


def watched_keys(spec: ModelPoolSpec) -> tuple[str, ...]:
    """``"<policy>/<provider>"`` of each ``prewarm.whenDown`` entry: how the scaler and its reasons name them."""
    return tuple(f"{w.policy}/{w.provider}" for w in spec.prewarm.when_down) if spec.prewarm is not None else ()
