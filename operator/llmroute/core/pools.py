"""Where a ModelPool is reached: the names every component derives from a pool's name and namespace alone.

The operator creates the Services under these names (:mod:`llmroute.core.pool_manifests`), ``compile()`` points a
pool provider's endpoint at the pool's Service, and routers resolve the headless Service to find the ready pods and
pick one by load (:mod:`llmroute.router.pools`). Deriving names instead of looking them up is what lets a router find
a pool without any Kubernetes API access.
"""

from __future__ import annotations

from llmroute.api.model_pool import VLLM_PORT

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
