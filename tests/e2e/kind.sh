#!/usr/bin/env bash
# End-to-end on a throwaway kind cluster (needs Docker): build the image, load it into kind, install the Helm chart,
# run provider emulators in the cluster, apply examples/deepseek-residency with its endpoints pointed at them, wait
# for the router, send requests through it with the openai SDK over `kubectl port-forward`, and tear down.
#
#   bash tests/e2e/kind.sh                 # everything, then delete the cluster
#   LLMROUTE_E2E_KEEP=1 bash tests/e2e/kind.sh   # keep the cluster for a look around
#
# Tools: docker, kind, kubectl, helm (.tools/ is used when present: bash scripts/install-tools.sh), and a Python with
# the project installed (pip install -e '.[test]': openai, pyyaml).
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER="${LLMROUTE_E2E_CLUSTER:-llmroute-e2e}"
IMAGE_REPO="${LLMROUTE_E2E_IMAGE_REPO:-llmroute}"
IMAGE_TAG="${LLMROUTE_E2E_IMAGE_TAG:-e2e}"
IMAGE="${IMAGE_REPO}:${IMAGE_TAG}"
KEEP="${LLMROUTE_E2E_KEEP:-0}"
PYTHON="${PYTHON:-python3}"
LOCAL_PORT="${LLMROUTE_E2E_PORT:-18080}"
SYSTEM_NS=llmroute-system
APP_NS=apps
EMULATOR_NS=llm-emulators
EXAMPLE=examples/deepseek-residency
PORT_FORWARD_PID=""

tool_path() {
  if [ -x ".tools/$1" ]; then
    echo "$PWD/.tools/$1"
  else
    command -v "$1" || { echo "kind.sh: $1 is required" >&2; exit 2; }
  fi
}
HELM="$(tool_path helm)"
KUBECTL="$(tool_path kubectl)"
KIND="$(tool_path kind)"
DOCKER="$(tool_path docker)"

log() { printf '\n==> %s\n' "$*"; }

cleanup() {
  local rc=$?
  if [ -n "$PORT_FORWARD_PID" ]; then
    kill "$PORT_FORWARD_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    log "failed (exit $rc); operator and router logs:"
    "$KUBECTL" -n "$SYSTEM_NS" logs deployment/llmroute-operator --tail=100 || true
    "$KUBECTL" -n "$APP_NS" logs deployment/deepseek-router --tail=100 || true
  fi
  if [ "$KEEP" = "1" ]; then
    log "keeping cluster $CLUSTER (delete it with: kind delete cluster --name $CLUSTER)"
  else
    log "deleting cluster $CLUSTER"
    "$KIND" delete cluster --name "$CLUSTER" || true
  fi
  exit "$rc"
}
trap cleanup EXIT

log "creating kind cluster $CLUSTER"
"$KIND" create cluster --name "$CLUSTER" --wait 120s

log "building $IMAGE and loading it into kind"
"$DOCKER" build -f operator/Dockerfile -t "$IMAGE" .
"$KIND" load docker-image "$IMAGE" --name "$CLUSTER"

log "installing the chart"
"$HELM" install llmroute charts/llmroute --namespace "$SYSTEM_NS" --create-namespace \
  --set image.repository="$IMAGE_REPO" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
  --wait --timeout 180s
"$KUBECTL" get crd llmroutes.llmroute.io providerpolicies.llmroute.io

log "starting provider emulators in $EMULATOR_NS (one per provider of the example, same image)"
"$KUBECTL" create namespace "$EMULATOR_NS" --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$KUBECTL" apply -n "$EMULATOR_NS" -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: provider-emulators
spec:
  replicas: 1
  selector:
    matchLabels: {app: provider-emulators}
  template:
    metadata:
      labels: {app: provider-emulators}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: emulators
          image: llmroute:e2e
          imagePullPolicy: Never
          command: [python, -c]
          args:
            - |
              import asyncio, contextlib
              from llmroute.emulator import run_emulator
              PROVIDERS = {"deepseek": 8001, "together": 8002, "fireworks": 8003, "bedrock": 8004, "vllm": 8005}
              async def main():
                  async with contextlib.AsyncExitStack() as stack:
                      for name, port in PROVIDERS.items():
                          key = None if name == "vllm" else f"local-demo-key-{name}"
                          await stack.enter_async_context(run_emulator(name, "0.0.0.0", port, api_key=key))
                      await asyncio.Event().wait()
              asyncio.run(main())
          ports:
            - {name: deepseek, containerPort: 8001}
            - {name: together, containerPort: 8002}
            - {name: fireworks, containerPort: 8003}
            - {name: bedrock, containerPort: 8004}
            - {name: vllm, containerPort: 8005}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata:
  name: provider-emulators
spec:
  selector: {app: provider-emulators}
  ports:
    - {name: deepseek, port: 8001, targetPort: deepseek}
    - {name: together, port: 8002, targetPort: together}
    - {name: fireworks, port: 8003, targetPort: fireworks}
    - {name: bedrock, port: 8004, targetPort: bedrock}
    - {name: vllm, port: 8005, targetPort: vllm}
YAML
if [ "$IMAGE" != "llmroute:e2e" ]; then
  "$KUBECTL" -n "$EMULATOR_NS" set image deployment/provider-emulators emulators="$IMAGE"
fi
"$KUBECTL" -n "$EMULATOR_NS" rollout status deployment/provider-emulators --timeout=120s

log "applying $EXAMPLE with provider endpoints pointed at the emulators"
"$KUBECTL" create namespace "$APP_NS" --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$KUBECTL" apply -f "$EXAMPLE/secrets.yaml"
"$PYTHON" - "$EXAMPLE/policy.yaml" "$EMULATOR_NS" <<'PY' | "$KUBECTL" apply -f -
import sys, yaml
ports = {"deepseek": 8001, "together": 8002, "fireworks": 8003, "bedrock": 8004, "vllm": 8005}
policy = yaml.safe_load(open(sys.argv[1]))
for provider in policy["spec"]["providers"]:
    provider["endpoint"] = f"http://provider-emulators.{sys.argv[2]}.svc.cluster.local:{ports[provider['name']]}/v1"
print(yaml.safe_dump(policy, sort_keys=False))
PY
"$KUBECTL" apply -f "$EXAMPLE/route.yaml"

log "waiting for the operator to create the router"
for _ in $(seq 1 90); do
  if "$KUBECTL" -n "$APP_NS" get deployment/deepseek-router >/dev/null 2>&1; then
    break
  fi
  sleep 2
done
"$KUBECTL" -n "$APP_NS" rollout status deployment/deepseek-router --timeout=180s
"$KUBECTL" -n "$APP_NS" wait llmroute/deepseek --for=condition=Ready --timeout=120s
"$KUBECTL" -n "$APP_NS" get llmroute/deepseek -o wide

log "sending requests through the router with the openai SDK (port-forward on 127.0.0.1:$LOCAL_PORT)"
"$KUBECTL" -n "$APP_NS" port-forward service/deepseek-router "$LOCAL_PORT:80" >/dev/null 2>&1 &
PORT_FORWARD_PID=$!
"$PYTHON" - "http://127.0.0.1:$LOCAL_PORT/v1" <<'PY'
import sys, time
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="unused-by-the-router", max_retries=0, timeout=30)
for attempt in range(30):  # the port-forward needs a moment
    try:
        client.models.list()
        break
    except openai.APIConnectionError:
        time.sleep(1)
checks = {"public": None, "pii": "deepseek"}  # data class -> a provider it must NOT reach
for data_class, forbidden in checks.items():
    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "Say hello"}],
        extra_headers={"x-llmroute-data-class": data_class})
    provider = raw.headers.get("x-llmroute-provider")
    completion = raw.parse()
    print(f"{data_class}: served by {provider}: {completion.choices[0].message.content!r}")
    assert completion.choices[0].message.content, "empty completion"
    assert provider and provider != forbidden, f"{data_class} request reached {provider}"
print("e2e: OK")
PY

log "metrics are served by the router"
curl -fsS "http://127.0.0.1:$LOCAL_PORT/metrics" | grep -m1 '^llmroute_requests_total'
log "e2e passed"
