#!/usr/bin/env bash
# demo.sh runs segad-edge's main job on an embedded default: no camera, broker,
# dataset or network. `make demo` calls it after `make setup` and `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bin/segad demo --dir demo-out "$@"
