#!/usr/bin/env bash
# One version, one place: llmroute.__version__ (operator/llmroute/__init__.py) names the Python package (pyproject
# reads it), the image tag and the chart's version/appVersion; CHANGELOG.md's newest section carries its notes; the
# README's "Install in a cluster" and examples/helm/values-production.yaml pin it for users.
#
#   scripts/release.sh bump X.Y.Z           set every place to X.Y.Z, move the Unreleased notes to [X.Y.Z] - today
#   scripts/release.sh check X.Y.Z          fail unless every place says X.Y.Z (the release workflow runs this)
#   scripts/release.sh assets X.Y.Z DIR     the chart package, the CRDs and the rendered install manifest in DIR
#
# Then: git commit -am "release: X.Y.Z" && git tag vX.Y.Z && git push origin main vX.Y.Z
# Environment: HELM (default helm), PYTHON (default python3), RELEASE_DATE (default today, UTC),
# RELEASE_ROOT (default this repository; tests point it at a copy).
set -euo pipefail

ROOT="${RELEASE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"
HELM="${HELM:-helm}"
PYTHON="${PYTHON:-python3}"
CHANGELOG_PY="$(cd "$(dirname "$0")" && pwd)/changelog.py"
INIT="$ROOT/operator/llmroute/__init__.py"
CHART_DIR="$ROOT/charts/llmroute"
CHART="$CHART_DIR/Chart.yaml"
README="$ROOT/README.md"
PRODUCTION_VALUES="$ROOT/examples/helm/values-production.yaml"
CHART_OCI="oci://ghcr.io/llmroute/charts/llmroute"
NAMESPACE="llmroute-system"

die() { printf 'release: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,13s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

valid_version() {
  [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "not a release version: '$1' (want X.Y.Z)"
}

package_version() { sed -n -E 's/^__version__ = "([^"]*)"$/\1/p' "$INIT"; }
chart_field() { sed -n -E "s/^$1: \"?([^\"]*)\"?\$/\\1/p" "$CHART"; }
# The README's install section, where users copy the version from: the chart's --version, image tags, build args.
PIN='(--version |llmroute:|VERSION=|image\.tag=)'
install_section() { sed -n '/^## Install in a cluster/,/^## /p' "$README"; }
readme_versions() {
  install_section | grep -o -E "${PIN}[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?" | sed -E "s/^${PIN}//" | sort -u
}
readme_chart_pin() { install_section | sed -n -E "s#.*helm install llmroute ${CHART_OCI} --version ([^ ]+).*#\\1#p"; }
production_tag() { sed -n -E 's/^  tag: "?([^"]*)"?$/\1/p' "$PRODUCTION_VALUES"; }

check() {
  local want="$1" bad=0 place got
  for place in package chart.version chart.appVersion changelog README README.chart values-production.tag; do
    case "$place" in
      package) got="$(package_version)" ;;
      chart.version) got="$(chart_field version)" ;;
      chart.appVersion) got="$(chart_field appVersion)" ;;
      changelog) got="$("$PYTHON" "$CHANGELOG_PY" --file "$ROOT/CHANGELOG.md" newest)" ;;
      README) got="$(readme_versions | paste -s -d ' ' -)" ;;
      README.chart) got="$(readme_chart_pin)" ;;
      values-production.tag) got="$(production_tag)" ;;
    esac
    if [ "$got" != "$want" ]; then
      printf 'release: %s is %s, want %s\n' "$place" "${got:-<none>}" "$want" >&2
      bad=1
    fi
  done
  [ "$bad" -eq 0 ] || die "versions drift; run: scripts/release.sh bump $want"
}

bump() {
  local version="$1" old old_re
  old="$(package_version)"
  old_re="${old//./\\.}"
  "$PYTHON" "$CHANGELOG_PY" --file "$ROOT/CHANGELOG.md" release "$version" "${RELEASE_DATE:-$(date -u +%F)}"
  sed -i -E "s/^__version__ = .*/__version__ = \"$version\"/" "$INIT"
  sed -i -E "s/^version: .*/version: $version/; s/^appVersion: .*/appVersion: \"$version\"/" "$CHART"
  sed -i -E "/^## Install in a cluster/,/^## /s/${PIN}${old_re}\\b/\\1$version/g" "$README"
  sed -i -E "s/^  tag: \"?${old_re}\"?$/  tag: \"$version\"/" "$PRODUCTION_VALUES"
  check "$version"
  printf 'release: %s everywhere; commit, then tag v%s\n' "$version" "$version" >&2
}

assets() {
  local version="$1" out="$2"
  check "$version"
  mkdir -p "$out"
  "$HELM" package "$CHART_DIR" --version "$version" --app-version "$version" --destination "$out" >/dev/null
  local crd
  : >"$out/llmroute-crds.yaml"
  for crd in "$CHART_DIR"/crds/*.yaml; do
    { printf -- '---\n'; cat "$crd"; } >>"$out/llmroute-crds.yaml"
  done
  {
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$NAMESPACE"
    "$HELM" template llmroute "$out/llmroute-$version.tgz" --namespace "$NAMESPACE" --include-crds
  } >"$out/llmroute-install.yaml"
  printf 'release: %s\n' "$out"/llmroute-"$version".tgz "$out"/llmroute-crds.yaml "$out"/llmroute-install.yaml >&2
}

[ "$#" -ge 2 ] || usage
command="$1"
version="$2"
valid_version "$version"
case "$command" in
  bump) [ "$#" -eq 2 ] || usage; bump "$version" ;;
  check) [ "$#" -eq 2 ] || usage; check "$version" ;;
  assets) [ "$#" -eq 3 ] || usage; assets "$version" "$3" ;;
  *) usage ;;
esac
