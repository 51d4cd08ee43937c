"""core.pool_manifests: a ModelPool's owned objects per pool shape; schema-valid for Kubernetes 1.30 and 1.35; the
vLLM pod shape (GPUs, shm, cache, token, probes, drain); engine arguments and env vars that repeat what the operator
sets are rejected naming the field."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from llmroute.api.model_pool import ModelPool
from llmroute.core.manifests import needs_update
from llmroute.core.pool_manifests import (
    PoolSpecError,
    cache_claim,
    deployment,
    engine_arg_errors,
    env_errors,
    owned_objects,
    pods_service,
    pool_errors,
    service,
)
from llmroute.core.pools import POOL_LABEL

pytestmark = pytest.mark.unit

LABELS = {"app.kubernetes.io/name": "llmroute-vllm", "llmroute.io/pool": "qwen", "app.kubernetes.io/instance": "qwen",
          "app.kubernetes.io/component": "model-pool", "app.kubernetes.io/part-of": "llmroute",
          "app.kubernetes.io/managed-by": "llmroute-operator"}
SELECTOR = {"app.kubernetes.io/name": "llmroute-vllm", "llmroute.io/pool": "qwen"}
OWNER = {"apiVersion": "llmroute.io/v1alpha1", "kind": "ModelPool", "name": "qwen", "uid": "uid-pool",
         "controller": True, "blockOwnerDeletion": True}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def make(name: str = "qwen", **spec: Any) -> ModelPool:
    return ModelPool.model_validate({
        "apiVersion": "llmroute.io/v1alpha1", "kind": "ModelPool",
        "metadata": {"name": name, "namespace": "gpu", "uid": "uid-pool"},
        "spec": {"model": "Qwen/Qwen3-8B", **spec},
    })


def pod_spec(pool: ModelPool, replicas: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(pool, replicas)["spec"]["template"]["spec"]
    return spec


def container(pool: ModelPool) -> dict[str, Any]:
    c: dict[str, Any] = pod_spec(pool)["containers"][0]
    return c


def volume(pool: ModelPool, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in pod_spec(pool)["volumes"] if v["name"] == name]
    assert len(found) == 1
    return found[0]


SHAPES = [
    pytest.param({}, id="minimal"),
    pytest.param({"resources": {"gpus": 8, "cpu": 32, "memory": "512Gi", "shmSize": "16Gi"}, "tensorParallelSize": 4,
                  "cache": {"size": "1Ti", "storageClassName": "efs"}}, id="8-gpus-tp-4-pvc-by-size-storage-class"),
    pytest.param({"cache": {"claimName": "weights"}}, id="existing-claim"),
    pytest.param({"cache": {"sizeLimit": "200Gi"}}, id="empty-dir-size-limit"),
    pytest.param({"hubTokenSecretRef": {"name": "hf"}}, id="hub-token"),
    pytest.param({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoExecute",
                                   "tolerationSeconds": 60}, {"operator": "Exists"}]}, id="custom-tolerations"),
    pytest.param({"tolerations": []}, id="no-tolerations"),
    pytest.param({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}]}]}}},
        "nodeSelector": {"topology.kubernetes.io/zone": "us-east-1a"}}, id="affinity-node-selector"),
    pytest.param({"runtimeClassName": "nvidia"}, id="runtime-class"),
    pytest.param({"resources": {"gpus": 0, "cpu": "16", "memory": "64Gi"}, "tolerations": []}, id="cpu-only"),
    pytest.param({"resources": {"gpus": 0}}, id="gpus-0-no-resources"),
    pytest.param({"servedModelName": "qwen3", "engineArgs": ["--max-model-len=32768", "--enable-prefix-caching"],
                  "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}, {"name": "EMPTY"}],
                  "startupTimeout": "1h", "drainTimeout": "5m"}, id="args-env-timeouts"),
]


@pytest.mark.parametrize("version", ["1.30", "1.35"])
@pytest.mark.parametrize("spec", SHAPES)
def test_every_object_validates_strictly(spec: dict[str, Any], version: str) -> None:
    for obj in owned_objects(make(**spec), replicas=2):
        kubernetes_validate.validate(obj, version, strict=True)


def test_validation_would_catch_a_bad_object() -> None:
    dep = deployment(make(), 1)
    dep["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] = "15s"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, "1.35", strict=True)


@pytest.mark.parametrize("spec", SHAPES)
def test_every_object_is_labelled_owned_and_stable(spec: dict[str, Any]) -> None:
    pool = make(**spec)
    objects = owned_objects(pool, replicas=1)
    assert objects == owned_objects(make(**spec), replicas=1)  # same inputs, same objects: no patch
    kinds = [o["kind"] for o in objects]
    assert kinds == (["PersistentVolumeClaim"] if "size" in spec.get("cache", {}) else []) + [
        "Service", "Service", "Deployment"]
    for obj in objects:
        assert obj["metadata"]["namespace"] == "gpu"
        assert obj["metadata"]["labels"] == LABELS
        assert obj["metadata"]["labels"][POOL_LABEL] == "qwen"
        assert obj["metadata"]["ownerReferences"] == [OWNER]
        assert not needs_update(obj, obj)


def _dropped_by_the_server(node: Any, path: str = "") -> Iterator[str]:
    """Paths of values the API server would not store: false bools (other than pointer fields), empty lists/maps
    (other than emptyDir and resources, which it keeps), empty strings."""
    kept_false = {"enableServiceLinks", "automountServiceAccountToken"}
    kept_empty = {"emptyDir", "resources"}
    if isinstance(node, dict):
        for k, v in node.items():
            if (v is False and k not in kept_false) or (v in ({}, [], "") and k not in kept_empty):
                yield f"{path}.{k}"
            yield from _dropped_by_the_server(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _dropped_by_the_server(v, f"{path}[{i}]")


@pytest.mark.parametrize("spec", SHAPES)
def test_no_field_the_server_drops(spec: dict[str, Any]) -> None:
    """needs_update() compares desired fields with the stored object: a dropped field would patch on every pass."""
    for obj in owned_objects(make(**spec), replicas=1):
        assert list(_dropped_by_the_server(obj)) == []


# --- the Deployment and the pod -----------------------------------------------------------------------------------


def test_minimal_pod_shape() -> None:
    pool = make()
    dep = deployment(pool, 1)
    assert dep["metadata"]["name"] == "qwen"
    spec = dep["spec"]
    assert spec["selector"] == {"matchLabels": SELECTOR}
    assert spec["template"]["metadata"]["labels"] == LABELS
    assert spec["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert spec["progressDeadlineSeconds"] == 30 * 60 + 900
    pod = spec["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    assert pod["tolerations"] == [GPU_TOLERATION]
    assert "nodeSelector" not in pod and "affinity" not in pod and "runtimeClassName" not in pod
    c = pod["containers"][0]
    assert c["name"] == "vllm" and c["image"] == "vllm/vllm-openai:v0.19.0"
    assert "command" not in c  # the image's entrypoint is `vllm serve`
    assert c["args"] == ["--model", "Qwen/Qwen3-8B", "--served-model-name", "Qwen/Qwen3-8B", "--port", "8000",
                         "--tensor-parallel-size", "1", "--shutdown-timeout", "120"]
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert c["resources"] == {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
    assert c["env"] == [{"name": "HF_HOME", "value": "/root/.cache/huggingface"}]
    assert c["volumeMounts"] == [{"name": "model-cache", "mountPath": "/root/.cache/huggingface"},
                                 {"name": "shm", "mountPath": "/dev/shm"}]
    assert pod["volumes"] == [{"name": "model-cache", "emptyDir": {}},
                              {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]


@pytest.mark.parametrize("replicas", [0, 1, 7])
def test_replicas_come_from_the_scaler_only(replicas: int) -> None:
    pool = make(replicas={"min": 2, "max": 4})
    assert deployment(pool, replicas)["spec"]["replicas"] == replicas
    # nothing in the pod template depends on the size: scaling never rolls the pods
    assert deployment(pool, replicas)["spec"]["template"] == deployment(pool, 3)["spec"]["template"]


def test_negative_replicas_are_a_bug() -> None:
    with pytest.raises(ValueError, match="replicas"):
        deployment(make(), -1)


def test_gpu_limits_equal_requests_and_cpu_memory_too() -> None:
    pool = make(resources={"gpus": 8, "cpu": 32, "memory": "512Gi", "shmSize": "16Gi"}, tensorParallelSize=4)
    c = container(pool)
    want = {"cpu": "32", "memory": "512Gi", "nvidia.com/gpu": "8"}
    assert c["resources"] == {"requests": want, "limits": want}
    assert c["args"][c["args"].index("--tensor-parallel-size") + 1] == "4"
    assert volume(pool, "shm") == {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}


def test_tensor_parallel_defaults_to_the_gpus() -> None:
    args = container(make(resources={"gpus": 4}))["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "4"


@pytest.mark.parametrize(("resources", "want"), [
    pytest.param({"gpus": 0}, {}, id="nothing"),
    pytest.param({"gpus": 0, "cpu": "16", "memory": "64Gi"},
                 {"requests": {"cpu": "16", "memory": "64Gi"}, "limits": {"cpu": "16", "memory": "64Gi"}},
                 id="cpu-memory"),
])
def test_a_cpu_pool_asks_for_no_gpu(resources: dict[str, Any], want: dict[str, Any]) -> None:
    c = container(make(resources=resources))
    assert c["resources"] == want
    assert c["args"][c["args"].index("--tensor-parallel-size") + 1] == "1"


@pytest.mark.parametrize(("cache", "want_volume", "claim"), [
    pytest.param({}, {"emptyDir": {}}, None, id="empty-dir"),
    pytest.param({"sizeLimit": "200Gi"}, {"emptyDir": {"sizeLimit": "200Gi"}}, None, id="empty-dir-size-limit"),
    pytest.param({"claimName": "weights"}, {"persistentVolumeClaim": {"claimName": "weights"}}, None,
                 id="existing-claim"),
    pytest.param({"size": "1Ti", "storageClassName": "efs", "accessMode": "ReadWriteMany"},
                 {"persistentVolumeClaim": {"claimName": "qwen-model-cache"}},
                 {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}},
                  "storageClassName": "efs"}, id="created-claim-storage-class"),
    pytest.param({"size": "500Gi"},
                 {"persistentVolumeClaim": {"claimName": "qwen-model-cache"}},
                 {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "500Gi"}}},
                 id="created-claim-default-class-rwo"),
])
def test_model_cache(cache: dict[str, Any], want_volume: dict[str, Any], claim: dict[str, Any] | None) -> None:
    pool = make(cache=cache)
    assert volume(pool, "model-cache") == {"name": "model-cache", **want_volume}
    assert {"name": "model-cache", "mountPath": "/root/.cache/huggingface"} in container(pool)["volumeMounts"]
    pvc = cache_claim(pool)
    if claim is None:
        assert pvc is None
        return
    assert pvc is not None
    assert pvc["metadata"]["name"] == "qwen-model-cache"
    assert pvc["metadata"]["ownerReferences"] == [OWNER]
    assert pvc["spec"] == claim


def test_hub_token_reaches_vllm_under_both_names() -> None:
    c = container(make(hubTokenSecretRef={"name": "hf", "key": "hf_token"},
                       env=[{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}, {"name": "EMPTY"}]))
    ref = {"secretKeyRef": {"name": "hf", "key": "hf_token"}}  # not optional: gated weights need it
    assert c["env"] == [{"name": "HF_HOME", "value": "/root/.cache/huggingface"},
                        {"name": "HF_TOKEN", "valueFrom": ref}, {"name": "HUGGING_FACE_HUB_TOKEN", "valueFrom": ref},
                        {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}, {"name": "EMPTY"}]


def test_hub_token_key_defaults_to_token() -> None:
    env = {e["name"]: e for e in container(make(hubTokenSecretRef={"name": "hf"}))["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}


@pytest.mark.parametrize(("tolerations", "want"), [
    pytest.param(None, [GPU_TOLERATION], id="default-gpu-taint"),
    pytest.param([], None, id="empty-tolerates-nothing"),
    pytest.param([{"key": "dedicated", "value": "llm", "effect": "NoExecute", "tolerationSeconds": 60},
                  {"operator": "Exists"}],
                 [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoExecute",
                   "tolerationSeconds": 60}, {"operator": "Exists"}], id="custom"),
])
def test_tolerations(tolerations: list[dict[str, Any]] | None, want: list[dict[str, Any]] | None) -> None:
    pod = pod_spec(make() if tolerations is None else make(tolerations=tolerations))
    assert pod.get("tolerations") == want


def test_placement_is_passed_through() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["H100"]}]}]}}}
    pod = pod_spec(make(affinity=affinity, nodeSelector={"pool": "gpu"}, runtimeClassName="nvidia"))
    assert pod["affinity"] == affinity
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["runtimeClassName"] == "nvidia"


@pytest.mark.parametrize(("startup", "budget"), [("30m", 1800), ("1h", 3600), ("45s", 45), ("1s", 1)])
def test_startup_probe_budget_is_the_startup_timeout(startup: str, budget: int) -> None:
    probe = container(make(startupTimeout=startup))["startupProbe"]
    assert probe["httpGet"] == {"path": "/health", "port": "http"}
    assert probe["timeoutSeconds"] <= probe["periodSeconds"] <= 5  # a hanging /health fails, a loaded pod is seen
    allowed = probe["periodSeconds"] * probe["failureThreshold"]
    assert budget <= allowed < budget + probe["periodSeconds"]
    assert probe["failureThreshold"] == max(1, math.ceil(budget / probe["periodSeconds"]))


def test_readiness_and_liveness_on_health_with_short_timeouts() -> None:
    c = container(make())
    assert c["startupProbe"] == {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2,
                                 "timeoutSeconds": 2, "failureThreshold": 900}
    assert c["readinessProbe"] == {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5,
                                   "timeoutSeconds": 3, "failureThreshold": 3, "successThreshold": 1}
    assert c["livenessProbe"] == {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 30,
                                  "timeoutSeconds": 5, "failureThreshold": 3}


@pytest.mark.parametrize(("drain", "seconds"), [("2m", 120), ("5m", 300), ("90s", 90), ("1.5s", 2)])
def test_drain_prestop_then_sigterm_with_shutdown_timeout(drain: str, seconds: int) -> None:
    pool = make(drainTimeout=drain)
    c = container(pool)
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 15}}}
    args = c["args"]
    assert args[args.index("--shutdown-timeout") + 1] == str(seconds)
    # the kubelet waits out preStop, then vLLM's drain, then a margin to stop the engine: never SIGKILL mid-stream
    assert pod_spec(pool)["terminationGracePeriodSeconds"] == 15 + seconds + 10


def test_engine_args_follow_the_managed_flags() -> None:
    args = container(make(servedModelName="qwen3", engineArgs=["--max-model-len=32768", "--model-impl", "vllm"]))[
        "args"]
    assert args == ["--model", "Qwen/Qwen3-8B", "--served-model-name", "qwen3", "--port", "8000",
                    "--tensor-parallel-size", "1", "--shutdown-timeout", "120",
                    "--max-model-len=32768", "--model-impl", "vllm"]


# --- Services -----------------------------------------------------------------------------------------------------


def test_cluster_ip_service() -> None:
    svc = service(make())
    assert svc["metadata"]["name"] == "qwen" and svc["metadata"]["labels"] == LABELS
    assert svc["spec"] == {"type": "ClusterIP", "selector": SELECTOR,
                           "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]}


def test_headless_service_publishes_ready_pods_only() -> None:
    svc = pods_service(make())
    assert svc["metadata"]["name"] == "qwen-pods" and svc["metadata"]["labels"] == LABELS
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"].get("publishNotReadyAddresses", False) is False
    assert svc["spec"]["selector"] == SELECTOR
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]


def test_services_select_the_pool_pods() -> None:
    pool = make()
    template_labels = deployment(pool, 1)["spec"]["template"]["metadata"]["labels"]
    for svc in (service(pool), pods_service(pool)):
        assert svc["spec"]["selector"].items() <= template_labels.items()
        assert svc["spec"]["selector"][POOL_LABEL] == "qwen"


# --- what cannot be built -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arg", "flag", "source"), [
    ("--model=other/model", "--model", "spec.model"),
    ("--served-model-name", "--served-model-name", "spec.servedModelName"),
    ("--port=9000", "--port", "always 8000"),
    ("--port 9000", "--port", "always 8000"),
    ("--tensor_parallel_size=2", "--tensor-parallel-size", "spec.tensorParallelSize"),
    ("-tp", "--tensor-parallel-size", "spec.tensorParallelSize"),
    ("--shutdown-timeout=5", "--shutdown-timeout", "spec.drainTimeout"),
])
def test_engine_args_may_not_repeat_a_managed_flag(arg: str, flag: str, source: str) -> None:
    pool = make(engineArgs=["--max-model-len=32768", "--enable-prefix-caching", arg])
    (error,) = engine_arg_errors(pool.spec)
    assert error.startswith(f'spec.engineArgs[2]: "{arg}" sets {flag}, which the operator sets (')
    assert source in error
    with pytest.raises(PoolSpecError, match=r"spec\.engineArgs\[2\]") as caught:
        deployment(pool, 1)
    assert [e.path for e in caught.value.errors] == ["spec.engineArgs[2]"]
    with pytest.raises(ValueError, match=r"spec\.engineArgs\[2\]"):  # PoolSpecError is a ValueError
        owned_objects(pool, 1)


def test_every_conflict_is_reported() -> None:
    pool = make(engineArgs=["--port=1", "--max-model-len=4096", "--model", "x"], hubTokenSecretRef={"name": "hf"},
                env=[{"name": "HF_TOKEN", "value": "t"}, {"name": "OK"}, {"name": "HF_HOME", "value": "/tmp"}])
    assert [e.split(":")[0] for e in engine_arg_errors(pool.spec)] == ["spec.engineArgs[0]", "spec.engineArgs[2]"]
    assert env_errors(pool.spec) == [
        "spec.env[0]: HF_TOKEN is set by spec.hubTokenSecretRef; remove it",
        "spec.env[2]: HF_HOME is set by the operator (the cache mount, /root/.cache/huggingface); remove it"]
    assert [e.path for e in pool_errors(pool)] == ["spec.engineArgs[0]", "spec.engineArgs[2]", "spec.env[0]",
                                                   "spec.env[2]"]


@pytest.mark.parametrize("args", [
    pytest.param(["--model-impl=vllm", "--model-loader-extra-config={}", "--portable"], id="longer-flags"),
    pytest.param(["--max-model-len", "32768", "--tokenizer", "Qwen/Qwen3-8B"], id="values"),
    pytest.param([], id="none"),
])
def test_other_engine_args_are_fine(args: list[str]) -> None:
    assert engine_arg_errors(make(engineArgs=args).spec) == []


def test_token_variables_are_the_users_without_a_hub_token_ref() -> None:
    assert env_errors(make(env=[{"name": "HF_TOKEN", "value": "hf_x"}]).spec) == []


@pytest.mark.parametrize("name", ["qwen.v3", "9qwen", "a" * 59])
def test_pool_name_must_make_dns_label_services(name: str) -> None:
    pool = make(name=name)
    (error,) = pool_errors(pool)
    assert error.path == "metadata.name" and "DNS-1035" in error.message and "-pods" in error.message
    with pytest.raises(PoolSpecError, match=r"metadata\.name"):
        deployment(pool, 1)


def test_longest_valid_pool_name() -> None:
    pool = make(name="a" * 58)
    assert pool_errors(pool) == []
    for obj in owned_objects(make(name="a" * 58, cache={"size": "10Gi"}), 1):
        kubernetes_validate.validate(obj, "1.35", strict=True)
