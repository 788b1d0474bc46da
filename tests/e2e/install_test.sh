#!/usr/bin/env bash
# `cmake --install` gives a working shepherd: run it from an unrelated
# directory, with the build tree and source tree out of its sight.
set -euo pipefail
build_dir="$1"
work="$(mktemp -d)"
trap 'kill "${mock:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/share/shepherd/policies/classify.lua"
test -f "$work/prefix/share/shepherd/lua/shepherd/models.lua"
# The editor definitions (README "Editor support") are installed with lua/.
for f in shepherd suite policies; do
  head -n 1 "$work/prefix/share/shepherd/lua/meta/$f.lua" | grep -qx -- '---@meta _'
done
cp "$work/prefix/bin/shepherd" "$work/prefix/bin/shepherd-copy"

cd "$work"
"$work/prefix/bin/shepherd" mock --port 0 --json > mock.json &
mock=$!
for _ in $(seq 100); do [ -s mock.json ] && break; sleep 0.05; done
port="$(sed -E 's/.*"port":([0-9]+).*/\1/' mock.json)"

mkdir suites && sed "s#http://127.0.0.1:8089/v1#http://127.0.0.1:$port/v1#" \
  "$(dirname "$0")/../../examples/demo.lua" > suites/demo.lua
# The policies come from the install (or the binary itself): never from the checkout.
DEMO_KEY_0=a DEMO_KEY_1=b SHEPHERD_HOME=/nonexistent "$work/prefix/bin/shepherd" run suites/demo.lua --quiet
test -f suites/demo.db
n="$("$work/prefix/bin/shepherd" export suites/demo.lua --format jsonl | grep -c '"state":"done"')"
[ "$n" = 36 ] || { echo "expected 36 done, got $n"; exit 1; }
echo "install: ok"
