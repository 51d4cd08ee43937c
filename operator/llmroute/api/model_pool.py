"""ModelPool: open weights served on our own GPUs by vLLM, run and scaled by the operator.

A ModelPool is **namespaced**: it belongs to whoever runs the GPUs. It is a provider like any other once a
ProviderPolicy names it (``providers[].pool: {name, namespace}``); residency then treats it as self-hosted, and
routes reach it through the pool's Service (the router picks pods by load, see :mod:`llmroute.router.pools`).

The operator turns a pool into a vLLM Deployment, a Service and a headless Service (:mod:`llmroute.core.pool_manifests`)
and sizes it every ``scaling.interval`` with :func:`llmroute.core.scaling.decide` from the pods' vLLM metrics, the
requests routers hold while the pool is at zero, and the health of the hosted providers it backs up
(``prewarm.whenDown``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from llmroute.api.base import (
    OBJECT_DEFAULT,
    ApiModel,
    Condition,
    Duration,
    Name,
    ObjectMeta,
    Rule,
    StatusModel,
    UniqueBy,
    parse_duration,
)

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.19.0"
"""Pinned, never ``latest``: a vLLM upgrade renames metrics and response fields (``gpu_cache_usage_perc``,
``reasoning_content``), so it is a change someone makes on purpose."""
GPU_RESOURCE = "nvidia.com/gpu"
VLLM_PORT = 8000
"""The port vLLM listens on in every pool pod and the port of the pool's Services (not configurable: routers and the
operator find pods without reading the ModelPool)."""

QUANTITY_PATTERN = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[mkMGTPE]|([eE][0-9]+))?$"
Quantity = Annotated[
    int | Annotated[str, Field(pattern=QUANTITY_PATTERN)],
    Field(description="A non-negative Kubernetes quantity, e.g. 500m, 8, 64Gi."),
]
FreeForm = Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]


class EnvVar(ApiModel):
    """An environment variable of the vLLM container (plain value; secrets go through hubTokenSecretRef)."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                      description="Variable name.")
    value: str = Field(default="", max_length=4096, description="Value.")


class PoolResources(ApiModel):
    """What each replica gets. GPU limits equal requests (the device plugin requires it)."""

    gpus: int = Field(default=1, ge=0, le=16,
                      description="nvidia.com/gpu per replica; tensor parallel size defaults to it. 0 runs on CPU.")
    cpu: Quantity | None = Field(default=None, description="CPU request (and limit), e.g. 8.")
    memory: Quantity | None = Field(default=None, description="Memory request (and limit), e.g. 64Gi.")
    shm_size: Quantity = Field(default="2Gi",
                               description="Size of /dev/shm (a memory-backed emptyDir) for tensor-parallel NCCL.")


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TolerationEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(ApiModel):
    """A Kubernetes toleration (the core/v1 shape)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(cel="self.operator != 'Exists' || !has(self.value)", message="a toleration with Exists takes no value",
             check=lambda t: t.operator is not TolerationOperator.EXISTS or t.value is None, field="value"),
        Rule(cel="has(self.key) || self.operator == 'Exists'",
             message="a toleration without a key must use operator Exists",
             check=lambda t: t.key is not None or t.operator is TolerationOperator.EXISTS, field="operator"),
        Rule(cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
             message="tolerationSeconds applies only to the NoExecute effect",
             check=lambda t: t.toleration_seconds is None or t.effect is TolerationEffect.NO_EXECUTE,
             field="tolerationSeconds"),
    )

    key: str | None = Field(default=None, max_length=316, description="Taint key; empty with Exists matches all.")
    operator: TolerationOperator = Field(default=TolerationOperator.EQUAL, description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value for Equal.")
    effect: TolerationEffect | None = Field(default=None, description="Effect to match; empty matches all.")
    toleration_seconds: int | None = Field(default=None, ge=0,
                                           description="How long a NoExecute taint is tolerated.")


def default_tolerations() -> list[Toleration]:
    """Tolerate the taint GPU node pools carry (``nvidia.com/gpu``, NoSchedule) whatever its value."""
    return [Toleration(key=GPU_RESOURCE, operator=TolerationOperator.EXISTS, effect=TolerationEffect.NO_SCHEDULE)]


class AccessMode(StrEnum):
    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_ONLY_MANY = "ReadOnlyMany"


class ModelCache(ApiModel):
    """Where the weights are cached (mounted at the Hugging Face hub cache): an existing PVC (``claimName``), a PVC the
    operator creates (``size``), or, with neither, an emptyDir (weights downloaded again by every new pod)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!(has(self.claimName) && has(self.size))",
            message="set claimName (an existing PVC) or size (a PVC the operator creates), not both",
            check=lambda c: not (c.claim_name is not None and c.size is not None),
            field="size",
        ),
        Rule(
            cel="!has(self.storageClassName) || has(self.size)",
            message="storageClassName applies only to a PVC the operator creates (set size)",
            check=lambda c: c.storage_class_name is None or c.size is not None,
            field="storageClassName",
        ),
        Rule(
            cel="!has(self.sizeLimit) || (!has(self.claimName) && !has(self.size))",
            message="sizeLimit applies only to the emptyDir cache (no claimName, no size)",
            check=lambda c: c.size_limit is None or (c.claim_name is None and c.size is None),
            field="sizeLimit",
        ),
    )

    claim_name: str | None = Field(default=None, min_length=1, max_length=253,
                                   description="An existing PersistentVolumeClaim in the pool's namespace.")
    size: Quantity | None = Field(default=None,
                                  description="Create a PVC <pool>-model-cache of this size, owned by the pool.")
    storage_class_name: str | None = Field(default=None, max_length=253,
                                           description="StorageClass of the created PVC; unset uses the default.")
    access_mode: AccessMode = Field(
        default=AccessMode.READ_WRITE_ONCE,
        description="Access mode of the created PVC. ReadWriteOnce (the default) works with every StorageClass but "
        "keeps every replica on one node; ReadWriteMany (a shared filesystem StorageClass) lets replicas on "
        "several nodes share one download.",
    )
    size_limit: Quantity | None = Field(default=None, description="sizeLimit of the emptyDir cache.")


class SecretRef(ApiModel):
    """A key in a Secret of the pool's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(default="token", min_length=1, max_length=253, description="Key within the Secret.")


class Replicas(ApiModel):
    """Bounds on the pool's size."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(cel="self.min <= self.max", message="replicas.min must not exceed replicas.max",
             check=lambda r: r.min <= r.max, field="min"),
    )

    min: int = Field(default=0, ge=0, le=1000, description="Smallest size; 0 lets an idle pool scale to zero.")
    max: int = Field(default=1, ge=1, le=1000, description="Largest size.")


class Scaling(ApiModel):
    """Load targets and timers of the pool's autoscaler (decisions: :func:`llmroute.core.scaling.decide`)."""

    interval: Duration = Field(default="5s", description="How often the pods' vLLM metrics are read and the size "
                               "decided (requests held at routers wake the scaler at once).")
    target_waiting_per_replica: int = Field(
        default=2, ge=1, le=10000,
        description="vllm:num_requests_waiting per replica above which the pool grows (queue pressure).",
    )
    kv_cache_ceiling_percent: int = Field(
        default=80, ge=1, le=100,
        description="Mean vllm:kv_cache_usage_perc over ready pods above which the pool grows (cache pressure).",
    )
    scale_down_delay: Duration = Field(
        default="2m",
        description="Load must allow a smaller size for this long, and this long must have passed since the last "
        "change, before the pool shrinks by one replica (no flapping).",
    )
    idle_to_zero: Duration = Field(
        default="10m",
        description="With replicas.min 0: no request waiting, running or held at a router for this long scales the "
        "pool to zero.",
    )


class WatchedProvider(ApiModel):
    """A hosted provider this pool backs up: its health in the operator's prober triggers a prewarm."""

    policy: Name = Field(description="The ProviderPolicy that lists the provider.")
    provider: Name = Field(description="Provider name in that policy, e.g. deepseek.")


class Prewarm(ApiModel):
    """Scale ahead of load: when a provider the pool backs up goes Down, start replicas before traffic arrives."""

    when_down: Annotated[
        list[WatchedProvider],
        Field(min_length=1, max_length=16),
        UniqueBy("policy", "provider", message="whenDown entries must be unique by policy and provider"),
    ] = Field(description="Providers whose outage (Down in the operator's prober) prewarms the pool.")
    replicas: int = Field(default=1, ge=1, le=1000,
                          description="Replicas to run at least while a watched provider is Down (capped by max).")
    hold_after_recovery: Duration = Field(
        default="10m",
        description="Keep the prewarmed replicas until the provider has been healthy this long (outages recur).",
    )


class ModelPoolSpec(ApiModel):
    """The weights, the pod shape, the bounds and how the pool scales."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.tensorParallelSize) || self.resources.gpus == 0 || "
                "self.tensorParallelSize <= self.resources.gpus",
            message="tensorParallelSize must not exceed resources.gpus (each shard needs its own GPU)",
            check=lambda s: s.tensor_parallel_size is None or s.resources.gpus == 0
            or s.tensor_parallel_size <= s.resources.gpus,
            field="tensorParallelSize",
        ),
    )

    model: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$",
                       description="Weights to serve: a Hugging Face id (deepseek-ai/DeepSeek-V3) or a local path.")
    served_model_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$",
        description="Model name the pool answers to (vLLM --served-model-name); unset serves it as model. LLMRoute "
        "backends of this pool's provider must use this name.",
    )
    image: str = Field(default=DEFAULT_VLLM_IMAGE, min_length=1, max_length=512,
                       description="vLLM image; pin a tag (metric and field names change between releases).")
    engine_args: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=64)] = Field(
        default_factory=list,
        description="Extra vLLM engine arguments, e.g. --max-model-len=32768. --model, --served-model-name, --port, "
        "--tensor-parallel-size and --shutdown-timeout are set from the fields of this spec.",
    )
    tensor_parallel_size: int | None = Field(default=None, ge=1, le=16,
                                             description="Tensor parallel size; unset uses resources.gpus.")
    env: Annotated[list[EnvVar], Field(max_length=64), UniqueBy("name", message="env names must be unique")] = Field(
        default_factory=list, description="Extra environment variables of the vLLM container.")
    resources: PoolResources = Field(default_factory=PoolResources, json_schema_extra=OBJECT_DEFAULT,
                                     description="GPUs, CPU and memory per replica.")
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, description="Node labels the pods must match, e.g. a GPU type.")
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = Field(
        default=None,
        description="Tolerations of the pods; unset tolerates nvidia.com/gpu NoSchedule (Exists), the taint GPU "
        "node pools carry (none when resources.gpus is 0). An empty list tolerates nothing.",
    )
    affinity: FreeForm | None = Field(default=None, description="Pod affinity (the core/v1 Affinity shape).")
    runtime_class_name: str | None = Field(
        default=None, max_length=253,
        description="RuntimeClass, e.g. nvidia where nvidia is not containerd's default runtime (k3s).",
    )
    cache: ModelCache = Field(default_factory=ModelCache, json_schema_extra=OBJECT_DEFAULT,
                              description="Model weights cache volume.")
    hub_token_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret key holding the model hub token (gated weights); given to vLLM as HF_TOKEN and "
        "HUGGING_FACE_HUB_TOKEN.",
    )
    replicas: Replicas = Field(default_factory=Replicas, json_schema_extra=OBJECT_DEFAULT,
                               description="Bounds on the pool's size.")
    scaling: Scaling = Field(default_factory=Scaling, json_schema_extra=OBJECT_DEFAULT,
                             description="Load targets and timers.")
    prewarm: Prewarm | None = Field(default=None,
                                    description="Scale up ahead of load when a hosted provider it backs up goes Down.")
    startup_timeout: Duration = Field(
        default="30m",
        description="How long a pod may take to load the weights (its startup probe budget) before it is restarted.",
    )
    drain_timeout: Duration = Field(
        default="2m",
        description="How long a stopping pod may take to finish running streams (termination grace period).",
    )

    @property
    def served_name(self) -> str:
        return self.served_model_name or self.model

    @property
    def tensor_parallel(self) -> int:
        return self.tensor_parallel_size or max(1, self.resources.gpus)

    @property
    def effective_tolerations(self) -> list[Toleration]:
        if self.tolerations is not None:
            return list(self.tolerations)
        return default_tolerations() if self.resources.gpus > 0 else []

    def interval_s(self) -> float:
        return parse_duration(self.scaling.interval)


class ModelPoolStatus(StatusModel):
    """Observed state of a ModelPool, written by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation the status was computed from.")
    replicas: int = Field(default=0, ge=0, description="Replicas of the vLLM Deployment.")
    ready_replicas: int = Field(default=0, ge=0, description="Replicas ready to serve (their /health answers 200).")
    desired_replicas: int = Field(default=0, ge=0, description="Size the autoscaler decided.")
    reason: str | None = Field(default=None,
                               description="Why this size: Load, Prewarm, PrewarmHold, Demand, Idle, Bounds or Steady.")
    message: str | None = Field(default=None, description="The decision in words, e.g. which provider is Down.")
    last_scale_time: str | None = Field(default=None, description="When the size last changed (RFC 3339).")
    conditions: list[Condition] = Field(default_factory=list, description="Accepted and Ready conditions.")


class ModelPool(ApiModel):
    """Namespaced: open weights served by vLLM on this cluster's GPUs, scaled on load, to zero and ahead of outages."""

    KIND: ClassVar[str] = "ModelPool"

    api_version: Literal["llmroute.io/v1alpha1"] = Field(default="llmroute.io/v1alpha1", alias="apiVersion")
    kind: Literal["ModelPool"] = "ModelPool"
    metadata: ObjectMeta
    spec: ModelPoolSpec
    status: ModelPoolStatus | None = None
