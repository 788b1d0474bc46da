#!/usr/bin/env bash
# Installs the dependencies, builds shepherd, starts the built-in mock
# provider on 127.0.0.1:8089 and runs the demo suite against it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash .ci/install-deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"

build/shepherd mock --port 8089 &
mock=$!
trap 'kill $mock 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:8089/stats >/dev/null && break; sleep 0.1; done

export DEMO_KEY_0="${DEMO_KEY_0:-demo-key-0}" DEMO_KEY_1="${DEMO_KEY_1:-demo-key-1}"
build/shepherd run examples/demo.lua
build/shepherd status examples/demo.lua --by model
echo "results: build/shepherd export examples/demo.lua --format jsonl"
