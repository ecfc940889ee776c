#!/usr/bin/env bash
# Self-test of the Python interop scripts against a private, throw-away redis-server.
# Starts redis-server on a free port (never 6379), runs write.py, dump.py,
# selftest_check.py and a few query.py specs, then stops that server (by its pid).
# Usage: tests/interop/selftest.sh      (PYTHON defaults to $POPOTO_PYTHON, else the venv that
# the interop tests create: <repo>/target/tmp/popoto-venv/bin/python; run them once first)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-${POPOTO_PYTHON:-$HERE/../../target/tmp/popoto-venv/bin/python}}"
if ! "$PYTHON" -c 'import popoto' 2>/dev/null; then
    echo "no popoto in $PYTHON: run 'cargo test --all-features --test interop' once (it creates" \
         "the venv), or set PYTHON to a python that has popoto==1.10.1" >&2
    exit 2
fi
WORK="$(mktemp -d)"
PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
[ "$PORT" != 6379 ] || { echo "refusing port 6379" >&2; exit 1; }

redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --daemonize yes --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
cleanup() {
    if [ -f "$WORK/redis.pid" ]; then kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true; fi
    sleep 0.2
    rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

export REDIS_URL="redis://127.0.0.1:$PORT/0" POPOTO_ALLOW_DB0_FLUSH=1
cd "$HERE"

"$PYTHON" write.py --flush > "$WORK/write.json"
"$PYTHON" dump.py > "$WORK/dump.json"
"$PYTHON" selftest_check.py < "$WORK/dump.json"
"$PYTHON" fixture.py --json > "$WORK/fixture.json"

cat > "$WORK/specs.json" <<'JSON'
[
 {"model": "Episode"},
 {"model": "KitchenSink"},
 {"model": "Episode", "filter": {"project_id": "acme", "score__gte": 0.5}, "order_by": "-score", "limit": 3},
 {"model": "Episode", "count": true, "filter": {"project_id": "globex"}},
 {"model": "KitchenSink", "get": {"tenant": "acme", "sku": "a-b"}},
 {"model": "KitchenSink", "get": {"tenant": "acme", "sku": "nope"}},
 {"model": "KitchenSink", "filter": {"tenant": "umbrella:eu-1", "region": "eu-1", "level__lte": 2}},
 {"model": "Episode", "filter": {"score__gt": 0}}
]
JSON
"$PYTHON" query.py < "$WORK/specs.json" > "$WORK/results.json"

"$PYTHON" - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
fx = json.load(open(f"{w}/fixture.json"))
res = json.load(open(f"{w}/results.json"))
written = json.load(open(f"{w}/write.json"))

def strip(rows):
    return sorted(json.dumps({k: v for k, v in r.items() if k != "_key"}, sort_keys=True) for r in rows)

assert strip(res[0]) == strip(fx["Episode"]), "Episode round trip differs from fixture"
assert strip(res[1]) == strip(fx["KitchenSink"]), "KitchenSink round trip differs from fixture"
assert [r["_key"] for r in res[0]] == sorted(written["Episode"]), "unordered fetch not key-sorted"
assert [r["title"] for r in res[2]] == ["big", "pilot", "a:b-c*d"], res[2]
assert res[3] == 6, res[3]
assert res[4]["_key"] == "KitchenSink:a/-b:acme" and res[4]["price"] == {"$decimal": "12.3400"}, res[4]
assert res[5] is None
assert [r["sku"] for r in res[6]] == ["umbrella:eu-1", "u{&#58;}raw"], res[6]
assert res[7]["$error"]["type"] == "QueryException", res[7]
print("ok: query.py results match the fixture")
PY
echo "selftest passed"
