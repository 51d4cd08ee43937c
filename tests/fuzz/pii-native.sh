#!/usr/bin/env bash
# Fuzz the PII detector's compiled part under AddressSanitizer and UBSan: build it with the sanitizers into a
# temporary folder, then run tests/fuzz/pii_native.py with the sanitizer runtime preloaded (needs gcc; on demand).
#   tests/fuzz/pii-native.sh [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
seed="${2:-1}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
include="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
suffix="$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
gcc -shared -fPIC -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
  -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -I"$include" \
  operator/llmroute/core/_pii_{clusters,context,numbers,keys,net,detect,walk,script}.c -o "$out/_pii_clusters$suffix"
LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 \
  python tests/fuzz/pii_native.py "$seconds" "$seed" "$out/_pii_clusters$suffix"
