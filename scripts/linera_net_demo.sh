#!/usr/bin/env bash
# The model registry on a real local Linera network (not part of CI; docs/linera.md, "A real
# local network"): starts one with `linera net up` on loopback (its committee's HTTP allow-list
# naming 127.0.0.1), publishes linera_app (`linera publish-and-create`), serves stories260K from
# a local HTTP server, registers it through `linera service` (GraphQL mutation `publishModel`),
# lists the models and runs greedy `generate`, whose text must be the simulator's golden text.
# Prints the network's start time, the publish time, the query times and tokens/s.
#
#   scripts/linera_net_demo.sh            # LINERA=/path/to/linera, or `linera` on PATH
#
# Needs `linera` with linera-server, linera-proxy and linera-storage-server beside it
# (linera-service 0.15.23, the version of linera_app's linera-sdk; how to build them: below or
# docs/linera.md). Environment: LINERA, EDGECHAIN_STORIES_DIR (default ../shared/models/
# stories260K), LINERA_DEMO_DIR (kept; default a temporary directory, removed),
# LINERA_SERVICE_PORT (default 8079). Exit codes: 0 success, 1 a step failed, 2 no `linera`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STORIES="${EDGECHAIN_STORIES_DIR:-$ROOT/../shared/models/stories260K}"
SERVICE_PORT="${LINERA_SERVICE_PORT:-8079}"
PROMPT="Once upon a time"
WASM="$ROOT/linera_app/target/wasm32-unknown-unknown/release"

log() { echo "linera_net_demo: $*" >&2; }
fail() { log "$*"; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

LINERA="${LINERA:-$(command -v linera || true)}"
if [[ -z $LINERA || ! -x $LINERA ]]; then
    cat >&2 <<'EOF'
linera_net_demo: no `linera` (set LINERA=/path/to/linera or put it on PATH). Build it
(about an hour of CPU on 2 cores; docs/linera.md, "Building linera"):

    cargo install linera-service@0.15.23 --locked --root /tmp/x   # stop it once downloaded,
    cp -r ~/.cargo/registry/src/*/linera-service-0.15.23 /tmp/linera-service && cd /tmp/linera-service
    cargo update -p linera-wasmer --precise 4.4.0-linera.9      # linera.8 fails to link today
    cargo build --release --locked -p linera-service -p linera-storage-service \
        --bin linera --bin linera-server --bin linera-proxy --bin linera-storage-server
    LINERA=$PWD/target/release/linera scripts/linera_net_demo.sh
EOF
    exit 2
fi
BIN_DIR="$(dirname "$(readlink -f "$LINERA")")"
for helper in linera-server linera-proxy linera-storage-server; do
    [[ -x $BIN_DIR/$helper ]] || { log "$helper must be beside $LINERA (linera net up runs it)"; exit 2; }
done
for f in stories260K.bin tok512.bin greedy_once_upon_a_time_256.txt; do
    [[ -f $STORIES/$f ]] || fail "missing $STORIES/$f (EDGECHAIN_STORIES_DIR)"
done

# Only the wasm32 modules are needed here, not the native tests.
"$ROOT/scripts/build_linera_app.sh" --wasm

if [[ -n ${LINERA_DEMO_DIR:-} ]]; then
    WORK="$LINERA_DEMO_DIR"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d -t linera-demo.XXXXXX)"
fi
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true # SIGTERM: net up stops its validators and removes nothing else
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    [[ -n ${LINERA_DEMO_DIR:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The model files, on loopback.
HTTP_PORT="$(free_port)"
python3 -m http.server --bind 127.0.0.1 --directory "$STORIES" "$HTTP_PORT" >"$WORK/http.log" 2>&1 &
PIDS+=($!)
BASE="http://127.0.0.1:$HTTP_PORT"

# The network: one validator, one shard, no fees, a fixed key seed; HTTP requests allowed to
# 127.0.0.1 only. `net up` prints the wallet's environment on stdout, then READY on stderr.
export NO_COLOR=1
unset LINERA_WALLET LINERA_KEYSTORE LINERA_STORAGE # net up makes its own
mkdir -p "$WORK/net"
# `linera --version` prints "linera " first (no git hash in a crates.io build), then the protocol.
log "starting the network in $WORK/net ($($LINERA --version 2>/dev/null | grep -m1 '^Linera protocol' || true))"
started="$(now)"
"$LINERA" net up --path "$WORK/net" --testing-prng-seed 37 --policy-config no-fees \
    --http-request-allow-list 127.0.0.1 >"$WORK/net-up.out" 2>"$WORK/net-up.log" &
PIDS+=($!)
for _ in $(seq 1200); do
    grep -q READY "$WORK/net-up.log" && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -20 "$WORK/net-up.log" >&2; fail "linera net up exited"; }
    sleep 0.25
done
grep -q READY "$WORK/net-up.log" || fail "linera net up not ready after 300 s ($WORK/net-up.log)"
NET_UP_S="$(since "$started")"
# The lines `export LINERA_WALLET=...`, LINERA_KEYSTORE, LINERA_STORAGE (colour codes removed).
eval "$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/net-up.out" | grep '^export LINERA_')"
log "network up in $NET_UP_S s; LINERA_WALLET=$LINERA_WALLET"

started="$(now)"
APP="$("$LINERA" publish-and-create "$WASM/edgechain_linera_contract.wasm" \
    "$WASM/edgechain_linera_service.wasm" --json-parameters null --json-argument null \
    2>"$WORK/publish.log" | tail -1)"
[[ $APP =~ ^[0-9a-f]{64}$ ]] || { tail -20 "$WORK/publish.log" >&2; fail "publish-and-create printed no application id"; }
PUBLISH_S="$(since "$started")"
log "published and created application $APP in $PUBLISH_S s"

"$LINERA" service --port "$SERVICE_PORT" >"$WORK/service.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 240); do
    curl -sf "http://127.0.0.1:$SERVICE_PORT/ready" >/dev/null && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { tail -20 "$WORK/service.log" >&2; fail "linera service exited"; }
    sleep 0.25
done
curl -sf "http://127.0.0.1:$SERVICE_PORT/ready" >/dev/null || fail "linera service not ready after 60 s ($WORK/service.log)"

# gql URL QUERY [PYTHON-EXPRESSION on `d`, the response's "data"]: POSTs a GraphQL query and
# prints the expression (default: the whole data as JSON); fails on GraphQL errors.
gql() {
    local body
    body="$(python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1]}))' "$2")"
    curl -sS -X POST -H 'Content-Type: application/json' --data "$body" "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)
if r.get("errors"):
    sys.exit("GraphQL errors: " + json.dumps(r["errors"]))
d = r["data"]
print(eval(sys.argv[1]) if len(sys.argv) > 1 else json.dumps(d))
' "${@:3}"
}

CHAIN="$(gql "http://127.0.0.1:$SERVICE_PORT/" '{ chains { default } }' 'd["chains"]["default"]')"
ENDPOINT="http://127.0.0.1:$SERVICE_PORT/chains/$CHAIN/applications/$APP"
log "chain $CHAIN; application at $ENDPOINT"

file_input() {
    python3 -c '
import pathlib, sys
from blake3 import blake3
data = pathlib.Path(sys.argv[1]).read_bytes()
print("{blake3: \"%s\", size: \"%d\", urls: [\"%s\"]}" % (blake3(data).hexdigest(), len(data), sys.argv[2]))
' "$1" "$2"
}
WEIGHTS="$(file_input "$STORIES/stories260K.bin" "$BASE/stories260K.bin")"
TOKENIZER="$(file_input "$STORIES/tok512.bin" "$BASE/tok512.bin")"
started="$(now)"
gql "$ENDPOINT" "mutation { publishModel(name: \"stories260K\", version: \"1\", weights: $WEIGHTS, \
tokenizer: $TOKENIZER, license: \"MIT\") }" '"block " + str(d)' >&2
REGISTER_S="$(since "$started")"
log "registered stories260K in $REGISTER_S s (one block)"

started="$(now)"
MODELS="$(gql "$ENDPOINT" '{ models { name version weights { blake3 size } retired registeredBy } }')"
MODELS_S="$(since "$started")"
echo "models: $MODELS"

# Greedy: one token first (the fixed cost: module compile, fetch, BLAKE3 check, load; and the
# prompt's length), then llama2.c's 256 positions: 257 - prompt tokens (BOS included).
GEN="generate(model: \"stories260K\", prompt: \"$PROMPT\", temperature: 0"
started="$(now)"
PROMPT_TOKENS="$(gql "$ENDPOINT" "{ $GEN, maxTokens: 1) { inputTokens } }" 'd["generate"]["inputTokens"]')"
ONE_S="$(since "$started")"
COUNT=$((257 - PROMPT_TOKENS))
started="$(now)"
gql "$ENDPOINT" "{ $GEN, maxTokens: $COUNT) { text outputTokens stopReason } }" >"$WORK/greedy.json"
GREEDY_S="$(since "$started")"
python3 - "$WORK/greedy.json" "$STORIES/greedy_once_upon_a_time_256.txt" "$PROMPT" <<'EOF' || fail "greedy text differs from the golden text"
import json, sys
result = json.load(open(sys.argv[1]))["generate"]
golden = open(sys.argv[2], encoding="utf-8").read()
print(sys.argv[3] + result["text"])
ok = sys.argv[3] + result["text"] + "\n" == golden
print(f"greedy text equals the golden text: {ok} ({result['outputTokens']} tokens, {result['stopReason']})")
sys.exit(0 if ok else 1)
EOF
python3 - <<EOF
one, greedy, count = $ONE_S, $GREEDY_S, $COUNT
print(f"figures: net up {$NET_UP_S:.1f} s; publish-and-create {$PUBLISH_S:.1f} s; "
      f"register (block) {$REGISTER_S:.2f} s; models query {$MODELS_S:.2f} s")
print(f"figures: generate 1 token {one:.2f} s, {count} tokens {greedy:.2f} s: "
      f"{count / greedy:.0f} tokens/s overall, decode {(count - 1) / (greedy - one):.0f} tokens/s")
EOF
