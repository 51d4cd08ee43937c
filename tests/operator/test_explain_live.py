"""``llmroute explain --cluster``: the real CLI, in a subprocess, against kmock's emulated API server.

The example's LLMRoute, ProviderPolicy and ModelPool and a router Deployment are created in the emulator and given
the statuses the operator and the Deployment controller would write (no operator runs: the statuses are fixed, so
the output is). The CLI reaches the emulator through a kubeconfig, as a user would reach a cluster.

Aspects: golden table and JSON (what-if options included), read-only (GETs only, no Secret), health shaping the
answer, a pool the user may not read, and one-line errors with exit 1 (no kubeconfig, unknown context, unreachable
server, route or policy not found, RBAC forbidden) or 2 (bad options).

Regenerate the goldens (``tests/unit/golden/live-*``) after an intended change with
``LLMROUTE_UPDATE_GOLDEN=1 pytest tests/operator/test_explain_live.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLE, example_doc
from tests.operator.conftest import Cluster, eventually, verb
from tests.operator.helpers import GV, NS, ROUTE, cond, deploy_example, deployment, route_status, router_available

pytestmark = pytest.mark.operator
GOLDEN = Path(__file__).parents[1] / "unit" / "golden"
POOL_NS = "llm-serving"
CLI_AGENT = "llmroute-explain"
T0, T1 = "2026-12-04T10:00:00Z", "2026-12-04T10:05:00Z"

POLICY_STATUS: dict[str, Any] = {
    "summary": "2/5 healthy",
    "providers": [
        {
            "name": "deepseek",
            "state": "Down",
            "reason": "HTTP 503; 3 failed probes in a row",
            "lastSuccessTime": T0,
            "lastFailureTime": T1,
            "consecutiveFailures": 3,
        },
        {"name": "together", "state": "Healthy", "lastSuccessTime": T1, "latencyMs": 120, "consecutiveSuccesses": 2},
        {
            "name": "fireworks",
            "state": "Degraded",
            "reason": "slow: probe took 3.1s",
            "lastSuccessTime": T1,
            "latencyMs": 3100,
        },
        {"name": "vllm", "state": "Healthy", "reason": "1 of 2 replicas ready", "lastSuccessTime": T1},
    ],  # bedrock: not probed yet (no entry)
}
ROUTE_STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Accepted",
            "status": "True",
            "reason": "Compiled",
            "message": "2 models, 5 providers",
            "lastTransitionTime": T0,
            "observedGeneration": 1,
        },
        {
            "type": "Ready",
            "status": "True",
            "reason": "RouterAvailable",
            "lastTransitionTime": T0,
            "observedGeneration": 1,
        },
        {
            "type": "Degraded",
            "status": "False",
            "reason": "AllClassesServed",
            "lastTransitionTime": T0,
            "observedGeneration": 1,
        },
    ],
}
POOL_STATUS = {
    "replicas": 2,
    "readyReplicas": 1,
    "desiredReplicas": 2,
    "reason": "Prewarm",
    "message": "deepseek is Down",
    "lastScaleTime": T1,
}
ROUTER_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": f"{ROUTE}-router", "namespace": NS},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "r"}},
        "template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": [{"name": "router"}]}},
    },
}


async def live_example(cluster: Cluster) -> None:
    """The example deployed, with the statuses an operator (and the Deployment controller) would have written."""
    await deploy_example(cluster)
    await cluster.create(example_doc("pool"), "modelpools")
    await cluster.create(ROUTER_DEPLOYMENT, "deployments")
    await cluster.patch(GV, "providerpolicies", None, "deepseek-residency", {"status": POLICY_STATUS}, sub="status")
    await cluster.patch(GV, "llmroutes", NS, ROUTE, {"status": ROUTE_STATUS}, sub="status")
    await cluster.patch(GV, "modelpools", POOL_NS, "deepseek-v3", {"status": POOL_STATUS}, sub="status")
    await cluster.patch(
        "apps/v1",
        "deployments",
        NS,
        f"{ROUTE}-router",
        {"status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}},
        sub="status",
    )


def write_kubeconfig(path: Path, server: str, namespace: str | None = None) -> Path:
    context: dict[str, Any] = {"cluster": "emulator", "user": "tester"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "emulator",
                "clusters": [{"name": "emulator", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {}}],
                "contexts": [{"name": "emulator", "context": context}],
            }
        )
    )
    return path


class Cli:
    """Runs ``python -m llmroute explain`` in a subprocess, with no kubeconfig but the one given."""

    def __init__(self, home: Path, kubeconfig: Path | None) -> None:
        self.home, self.kubeconfig = home, kubeconfig

    async def __call__(self, *argv: str, kubeconfig: bool = True) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
        env["HOME"] = str(self.home)  # no ~/.kube/config of the machine's
        if kubeconfig and self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "llmroute",
            "explain",
            *argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture()
async def cli(cluster: Cluster, tmp_path: Path) -> Cli:
    await live_example(cluster)
    return Cli(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", cluster.url))


def golden(name: str, out: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LLMROUTE_UPDATE_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text(), f"explain --cluster output changed; see {path}"


def cli_requests(cluster: Cluster) -> list[Any]:
    return [r for r in cluster.emulator if r.headers.get("User-Agent") == CLI_AGENT]


def one_line_error(code: int, out: str, err: str, expected_code: int = 1) -> str:
    assert (code, out) == (expected_code, ""), err
    assert err.count("\n") == 1 and err.startswith("llmroute: error: ") and "Traceback" not in err, err
    return err.strip().removeprefix("llmroute: error: ")


# --- golden output ---------------------------------------------------------------------------------------------


GOLDEN_CASES = {
    # the status has deepseek Down: public traffic that would start at deepseek starts at the pool (1 of 2 ready)
    "live-public.txt": ["--class", "public"],
    "live-public.json": ["--class", "public", "--output", "json"],
    # what-if: deepseek recovers and together goes down
    "live-public-up-deepseek-down-together.txt": ["--class", "public", "--up", "deepseek", "--down", "together"],
    # the route's default class (internal): deepseek is denied whatever its health
    "live-internal.txt": [],
    # the policy alone: the status' Down counts as up
    "live-public-ignore-health.txt": ["--class", "public", "--ignore-health"],
    # a sample prompt with personal data escalates public to pii: deepseek is denied, not merely down
    "live-public-chat-with-pii-text.txt": [
        "--class",
        "public",
        "--model",
        "deepseek-chat",
        "--text",
        "Refund jane@example.com, card 4111 1111 1111 1111",
    ],
}


@pytest.mark.parametrize("name", GOLDEN_CASES)
async def test_golden(cli: Cli, cluster: Cluster, name: str) -> None:
    code, out, err = await cli("--cluster", "-n", NS, ROUTE, *GOLDEN_CASES[name])
    assert (code, err) == (0, "")
    golden(name, out)


# --- semantics ---------------------------------------------------------------------------------------------------


async def test_reads_only_what_it_needs_and_no_secret(cli: Cli, cluster: Cluster) -> None:
    code, _, err = await cli("--cluster", "-n", NS, ROUTE)
    assert (code, err) == (0, "")
    requests = cli_requests(cluster)
    assert {verb(r) for r in requests} == {"GET"}
    assert sorted(str(r.url.path) for r in requests) == sorted(
        [
            f"/apis/{GV}/namespaces/{NS}/llmroutes/{ROUTE}",
            f"/apis/{GV}/providerpolicies/deepseek-residency",
            f"/apis/{GV}/namespaces/{POOL_NS}/modelpools/deepseek-v3",
            f"/apis/apps/v1/namespaces/{NS}/deployments/{ROUTE}-router",
        ]
    )


async def test_json_follows_the_status(cli: Cli, cluster: Cluster) -> None:
    """The JSON changes with the cluster: deepseek recovering in the status brings public traffic back to it."""
    code, out, _ = await cli("--cluster", "-n", NS, ROUTE, "--class", "public", "--output", "json")
    assert code == 0
    before = json.loads(out)
    chat = before["models"][0]
    assert before["live"]["statusDown"] == ["deepseek"] and chat["backends"][0]["down"] is True
    assert chat["backends"][0]["health"] == "Down"
    providers = [dict(p, state="Healthy") if p["name"] == "deepseek" else p for p in POLICY_STATUS["providers"]]
    await cluster.patch(
        GV, "providerpolicies", None, "deepseek-residency", {"status": {"providers": providers}}, sub="status"
    )
    code, out, _ = await cli("--cluster", "-n", NS, ROUTE, "--class", "public", "--output", "json")
    assert code == 0
    after = json.loads(out)
    assert after["live"]["statusDown"] == [] and after["models"][0]["outcome"] == "first attempt: deepseek 100%"
    assert after["live"]["router"] == {
        "deployment": f"{ROUTE}-router",
        "found": True,
        "desired": 3,
        "replicas": 3,
        "ready": 2,
        "available": 2,
        "updated": 3,
    }


def without_health(explained: dict[str, Any]) -> dict[str, Any]:
    models = [
        {**m, "backends": [{k: v for k, v in b.items() if k != "health"} for b in m["backends"]]}
        for m in explained["models"]
    ]
    return {**{k: v for k, v in explained.items() if k != "live"}, "models": models}


@pytest.mark.parametrize("argv", [["--class", "public", "--down", "deepseek"], ["--class", "pii"]])
async def test_before_the_operator_ran_the_answer_is_the_file_modes(
    cluster: Cluster, tmp_path: Path, argv: list[str]
) -> None:
    """The example applied, nothing reconciled yet (no status, no Deployment): the explanation is exactly the one of
    the same manifests as files, and the live part says what is not there yet."""
    await deploy_example(cluster)
    await cluster.create(example_doc("pool"), "modelpools")
    cli = Cli(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", cluster.url))
    code, out, err = await cli("--cluster", "-n", NS, ROUTE, "--output", "json", *argv)
    assert (code, err) == (0, "")
    live = json.loads(out)
    code, out, err = await cli(str(EXAMPLE), "--output", "json", *argv)
    assert (code, err) == (0, "")
    assert without_health(live) == json.loads(out)
    assert {b["health"] for m in live["models"] for b in m["backends"]} == {"Unknown"}
    assert live["live"]["router"] == {"deployment": f"{ROUTE}-router", "found": False}
    assert live["live"]["conditions"] == [] and live["live"]["statusDown"] == []
    assert live["live"]["pools"] == [{"pool": f"{POOL_NS}/deepseek-v3", "found": True, "hasStatus": False}]
    code, out, err = await cli("--cluster", "-n", NS, ROUTE, *argv)
    assert "router Deployment apps/deepseek-router: not found (not created yet: see the route's conditions)" in out
    assert "LLMRoute conditions: none yet (the operator has not reconciled the route)" in out
    assert "no status yet (the operator has not reconciled the pool)" in out


async def test_what_the_real_operator_wrote(operator: Cluster, tmp_path: Path) -> None:
    """With the real operator: the conditions it wrote, the router Deployment it created (found under the name the
    operator gives it) and the pool status it wrote are what the explanation shows."""
    await deploy_example(operator)
    await operator.create(example_doc("pool"), "modelpools")
    await eventually(lambda: deployment(operator), what="router Deployment")
    await router_available(operator)
    await eventually(lambda: ready(operator), what="Ready=True")
    pool = await eventually(lambda: pool_status(operator), what="ModelPool status")
    code, out, err = await Cli(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", operator.url))(
        "--cluster", "-n", NS, ROUTE, "--output", "json"
    )
    assert (code, err) == (0, "")
    live = json.loads(out)["live"]
    written = (await route_status(operator))["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in live["conditions"]] == [
        (c["type"], c["status"], c["reason"]) for c in written
    ]
    assert live["router"] == {
        "deployment": f"{ROUTE}-router",
        "found": True,
        "desired": 2,
        "replicas": 2,
        "ready": 2,
        "available": 2,
        "updated": 0,
    }
    assert live["pools"] == [
        {
            "pool": f"{POOL_NS}/deepseek-v3",
            "found": True,
            "hasStatus": True,
            "replicas": pool.get("replicas", 0),
            "ready": pool.get("readyReplicas", 0),
            "desired": pool.get("desiredReplicas", 0),
            "reason": pool.get("reason"),
            "message": pool.get("message"),
        }
    ]


async def ready(cluster: Cluster) -> bool:
    return (await cond(cluster, "Ready")).get("status") == "True"


async def pool_status(cluster: Cluster) -> dict[str, Any] | None:
    pool = await cluster.get(GV, "modelpools", POOL_NS, "deepseek-v3")
    return (pool or {}).get("status")


async def test_namespace_from_the_context(cluster: Cluster, tmp_path: Path) -> None:
    await live_example(cluster)
    cli = Cli(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", cluster.url, namespace=NS))
    code, out, err = await cli(ROUTE, "--cluster")
    assert (code, err) == (0, "")
    assert out.startswith(f"LLMRoute {NS}/{ROUTE}  ProviderPolicy deepseek-residency  data class internal")
    code, out, err = await cli("--cluster", "-n", "other", ROUTE)
    assert one_line_error(code, out, err) == f'LLMRoute "{ROUTE}" not found in namespace "other" (found there: none)'


async def test_a_pool_the_user_may_not_read_is_shown_as_unknown(cli: Cli, cluster: Cluster) -> None:
    cluster.emulator[f"get /apis/{GV}/namespaces/{POOL_NS}/modelpools/deepseek-v3"] << 403 << forbidden()
    code, out, err = await cli("--cluster", "-n", NS, ROUTE, "--class", "public")
    assert (code, err) == (0, "")
    pool_row = next(line for line in out.splitlines() if line.startswith(f"  {POOL_NS}/deepseek-v3"))
    assert pool_row.split()[1:5] == ["-", "-", "-", "-"]
    assert f'unknown (forbidden: may not get modelpools.llmroute.io "deepseek-v3" in namespace "{POOL_NS}")' in out
    # the pool's state is unknown, so the explanation says what happens either way, as in file mode
    assert (
        "first attempt: vllm 100%; while ModelPool llm-serving/deepseek-v3 has no ready replica: first attempt: "
        "together 75%, fireworks 25%"
    ) in out


# --- errors ------------------------------------------------------------------------------------------------------


def forbidden() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'User "jane" cannot get resource',
    }


async def test_route_not_found_names_the_routes_there(cli: Cli) -> None:
    code, out, err = await cli("--cluster", "-n", NS, "deepsek")
    assert one_line_error(code, out, err) == (
        f'LLMRoute "deepsek" not found in namespace "{NS}" (found there: {ROUTE})'
    )


async def test_rbac_forbidden_on_the_route(cli: Cli, cluster: Cluster) -> None:
    cluster.emulator[f"get /apis/{GV}/namespaces/{NS}/llmroutes/{ROUTE}"] << 403 << forbidden()
    code, out, err = await cli("--cluster", "-n", NS, ROUTE)
    assert one_line_error(code, out, err) == (
        f'forbidden: the user of context "emulator" may not get llmroutes.llmroute.io "{ROUTE}" in namespace "{NS}" '
        "(HTTP 403; ask for RBAC get on it)"
    )


async def test_rbac_forbidden_on_the_policy(cli: Cli, cluster: Cluster) -> None:
    cluster.emulator[f"get /apis/{GV}/providerpolicies/deepseek-residency"] << 403 << forbidden()
    code, out, err = await cli("--cluster", "-n", NS, ROUTE)
    assert one_line_error(code, out, err) == (
        'forbidden: the user of context "emulator" may not get providerpolicies.llmroute.io "deepseek-residency" '
        "(HTTP 403; ask for RBAC get on it)"
    )


async def test_credentials_rejected(cli: Cli, cluster: Cluster) -> None:
    cluster.emulator[f"get /apis/{GV}/namespaces/{NS}/llmroutes/{ROUTE}"] << 401 << {"kind": "Status", "code": 401}
    code, out, err = await cli("--cluster", "-n", NS, ROUTE)
    assert one_line_error(code, out, err) == (
        'unauthorized: the API server rejected the credentials of the user of context "emulator" (HTTP 401)'
    )


async def test_policy_not_found(cli: Cli, cluster: Cluster) -> None:
    await cluster.patch(GV, "llmroutes", NS, ROUTE, {"spec": {"policyRef": {"name": "gone"}}})
    code, out, err = await cli("--cluster", "-n", NS, ROUTE)
    assert one_line_error(code, out, err) == (
        f'ProviderPolicy "gone" not found (the policy LLMRoute {NS}/{ROUTE} names in spec.policyRef)'
    )


async def test_no_kubeconfig(cli: Cli) -> None:
    code, out, err = await cli("--cluster", ROUTE, kubeconfig=False)
    assert one_line_error(code, out, err) == (
        "no kubeconfig: ~/.kube/config does not exist (pass --kubeconfig, or run in a cluster)"
    )
    code, out, err = await cli("--cluster", "--kubeconfig", str(cli.home / "nope.yaml"), ROUTE)
    assert one_line_error(code, out, err) == f"kubeconfig {cli.home / 'nope.yaml'}: no such file"


async def test_unknown_context(cli: Cli) -> None:
    code, out, err = await cli("--cluster", "--context", "prod", ROUTE)
    assert one_line_error(code, out, err) == (f'kubeconfig {cli.kubeconfig} has no context "prod" (contexts: emulator)')


async def test_unreachable_api_server(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = Cli(tmp_path, write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"))
    code, out, err = await cli("--cluster", "-n", NS, ROUTE)
    assert one_line_error(code, out, err) == (
        f"cannot reach the API server at http://127.0.0.1:{port}: Connection refused"
    )


async def test_bad_options_are_input_errors(cli: Cli) -> None:
    code, out, err = await cli("--cluster", "-n", NS, ROUTE, "--up", "deepsea")
    assert one_line_error(code, out, err, 2) == (
        '--up: no provider "deepsea" in ProviderPolicy "deepseek-residency" (known: deepseek, together, fireworks, '
        "bedrock, vllm)"
    )
    code, out, err = await cli("--cluster", "-n", NS, ROUTE, "--up", "deepseek", "--down", "deepseek")
    assert one_line_error(code, out, err, 2) == '"deepseek" is both in --down and --up'
    code, out, err = await cli("--cluster", ROUTE, "other-route")
    assert one_line_error(code, out, err, 2) == (
        "--cluster explains one LLMRoute: llmroute explain --cluster -n NAMESPACE ROUTE"
    )
    code, out, err = await cli("-n", NS, "examples/deepseek-residency")
    assert one_line_error(code, out, err, 2) == (
        "--namespace needs --cluster (llmroute explain --cluster -n NAMESPACE ROUTE)"
    )


async def test_a_route_name_cannot_reach_another_object(cli: Cli, cluster: Cluster) -> None:
    """The name goes into a URL path: one that is not a Kubernetes name is refused before any request is sent."""
    sneaky = f"../../../../api/v1/namespaces/{NS}/secrets/llm-provider-keys"
    code, out, err = await cli("--cluster", "-n", NS, sneaky)
    assert one_line_error(code, out, err, 2) == (
        f'LLMRoute name "{sneaky}" is not a Kubernetes name (lowercase letters, digits, "-" and ".")'
    )
    code, out, err = await cli("--cluster", "-n", "apps/../kube-system", ROUTE)
    assert one_line_error(code, out, err, 2).startswith('namespace "apps/../kube-system" is not a Kubernetes name')
    assert cli_requests(cluster) == []
