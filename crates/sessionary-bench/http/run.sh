#!/usr/bin/env bash
# HTTP benchmark of issue #3: `GET /` behind SessionLayer (MemoryStore, sliding
# expiry) against the same handler without a session, in the same run.
#
#   crates/sessionary-bench/http/run.sh
#
# Environment (defaults in brackets): ROUNDS [3], DURATION [10s], THREADS [2],
# CONNECTIONS [64], URL_PATH [/] (`/data` also decrypts one data key),
# SESSIONS [10000] (created, and their cookies rotated over),
# COOKIES [all] (rotate over only the first N cookies; 1 = one cookie throughout),
# BARE_PORT [3001], SESSION_PORT [3002], WARMUP [3s], NO_BUILD [unset; set it
# to skip `cargo build` and use the binary already in $CARGO_TARGET_DIR/release],
# NOOP_PORT [unset; set it (e.g. 3003) to also measure the bare handler behind a
# pass-through middleware, a control for what any `Router::layer` costs],
# PIN [unset; e.g. `0:1` runs the server on CPU 0 and wrk on CPU 1 (taskset)].
# BENCH_REDIS_URL [unset: MemoryStore; set: the sessions live in that Redis],
# BENCH_NEAR_CACHE [unset; with Redis, a near cache with this max age in ms].
# PEER [unset; with BENCH_REDIS_URL, set it to also measure the peer,
# tower-sessions with tower-sessions-redis-store on the same Redis (`../peer/`,
# not a workspace member, built here), reading the session on PEER_READ_PORT
# [3004] and saving it on every request on PEER_SAVE_PORT [3005], fred pool of
# PEER_POOL [6] connections; same handler, same rounds, same bare column].
# Needs `wrk` on PATH. By default nothing is pinned: server and wrk share all cores.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
URL_PATH=${URL_PATH:-/}
SESSIONS=${SESSIONS:-10000}
BARE_PORT=${BARE_PORT:-3001}
SESSION_PORT=${SESSION_PORT:-3002}
WARMUP=${WARMUP:-3s}
COOKIES=${COOKIES:-$SESSIONS}
NOOP_PORT=${NOOP_PORT:-}
PIN=${PIN:-}
PEER=${PEER:-}
PEER_READ_PORT=${PEER_READ_PORT:-3004}
PEER_SAVE_PORT=${PEER_SAVE_PORT:-3005}
PEER_POOL=${PEER_POOL:-6}
if [ -n "$PEER" ] && [ -z "${BENCH_REDIS_URL:-}" ]; then
  echo "PEER needs BENCH_REDIS_URL" >&2; exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p sessionary-bench --bin http_bench_server
[ -z "$PEER" ] || [ -n "${NO_BUILD:-}" ] ||
  cargo build --release -q --manifest-path "$here/../peer/Cargo.toml" \
    --target-dir "${CARGO_TARGET_DIR:-$root/target}"
server_pin=() wrk_pin=()
if [ -n "$PIN" ]; then
  server_pin=(taskset -c "${PIN%%:*}") wrk_pin=(taskset -c "${PIN#*:}")
fi
tokens=$(mktemp)
log=$(mktemp)
"${server_pin[@]}" "${CARGO_TARGET_DIR:-$root/target}/release/http_bench_server" \
  "$BARE_PORT" "$SESSION_PORT" "$SESSIONS" "$tokens" "${NOOP_PORT:-0}" >"$log" 2>&1 &
server=$!
peer= peer_tokens= peer_log=
cleanup() {
  for p in $server $peer; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  # The sessions of this run: the server's key prefix is `bench:<pid>:`.
  if [ -n "${BENCH_REDIS_URL:-}" ]; then
    redis-cli -u "$BENCH_REDIS_URL" --scan --pattern "bench:$server:*" |
      xargs -r -n 1000 redis-cli -u "$BENCH_REDIS_URL" DEL >/dev/null 2>&1 || true
  fi
  # The peer's records are keyed by bare session id: delete them.
  if [ -n "$peer_tokens" ] && [ -s "$peer_tokens" ]; then
    xargs -n 1000 redis-cli -u "$BENCH_REDIS_URL" DEL <"$peer_tokens" >/dev/null 2>&1 || true
  fi
  rm -f "$tokens" "$log" "${cookies:-}" "$peer_tokens" "$peer_log"
}
trap cleanup EXIT
if [ -n "$PEER" ]; then
  peer_tokens=$(mktemp) peer_log=$(mktemp)
  "${server_pin[@]}" "${CARGO_TARGET_DIR:-$root/target}/release/sessionary-bench-peer" \
    "$BENCH_REDIS_URL" "$PEER_READ_PORT" "$PEER_SAVE_PORT" "$SESSIONS" "$peer_tokens" "$PEER_POOL" >"$peer_log" 2>&1 &
  peer=$!
fi
for p in $server $peer; do
  plog=$log; [ "$p" = "$server" ] || plog=$peer_log
  for _ in $(seq 1 600); do
    grep -q ready "$plog" && break
    kill -0 "$p" 2>/dev/null || { cat "$plog" >&2; exit 1; }
    sleep 0.1
  done
  grep -q ready "$plog" || { echo "server did not start" >&2; cat "$plog" >&2; exit 1; }
done
cookies=$(mktemp)
head -n "$COOKIES" "$tokens" >"$cookies"

# A request with a cookie must get `Sessionary-Expires` (the session was found).
# The sessions are bound to the browser user agent `cookies.lua` sends.
first=$(head -n1 "$tokens")
ua='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
if ! curl -s -o /dev/null -D - -A "$ua" -H "Cookie: session=$first" "http://127.0.0.1:$SESSION_PORT$URL_PATH" | grep -qi '^sessionary-expires:'; then
  echo "session port did not recognise the cookie" >&2; exit 1
fi

if [ -n "$PEER" ]; then
  peer_cookies=$(mktemp)
  head -n "$COOKIES" "$peer_tokens" >"$peer_cookies"
  trap 'cleanup; rm -f "$peer_cookies"' EXIT
  pfirst=$(head -n1 "$peer_tokens")
  for p in "$PEER_READ_PORT" "$PEER_SAVE_PORT"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -A "$ua" -H "Cookie: session=$pfirst" "http://127.0.0.1:$p/")
    [ "$code" = 200 ] || { echo "peer port $p did not recognise the cookie ($code)" >&2; exit 1; }
  done
fi

bench() { # port duration [cookies file] -> requests/s
  "${wrk_pin[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" -s "$here/cookies.lua" \
    "http://127.0.0.1:$1$URL_PATH" -- "${3:-$cookies}" |
    awk '/^Requests\/sec:/ {print $2} /Non-2xx/ {print "non-2xx responses" > "/dev/stderr"; exit 1}'
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, path $URL_PATH, $SESSIONS sessions, $(wc -l <"$cookies") cookies rotated, $(nproc) cores, ROUNDS=$ROUNDS${PIN:+, pinned server:wrk CPUs $PIN}"
bench "$BARE_PORT" "$WARMUP" >/dev/null
bench "$SESSION_PORT" "$WARMUP" >/dev/null
[ -z "$NOOP_PORT" ] || bench "$NOOP_PORT" "$WARMUP" >/dev/null
if [ -n "$PEER" ]; then
  bench "$PEER_READ_PORT" "$WARMUP" "$peer_cookies" >/dev/null
  bench "$PEER_SAVE_PORT" "$WARMUP" "$peer_cookies" >/dev/null
fi

ratios=() noops=() preads=() psaves=()
if [ -n "$PEER" ]; then
  printf '%-6s %12s %12s %7s %12s %7s %12s %7s\n' round bare session ratio peer-read ratio peer-save ratio
elif [ -n "$NOOP_PORT" ]; then
  printf '%-6s %12s %12s %7s %12s %7s\n' round bare session ratio noop-layer ratio
else
  printf '%-6s %12s %12s %7s\n' round bare session ratio
fi
for r in $(seq 1 "$ROUNDS"); do
  # Alternate which side goes first, so drift hits both alike.
  if (( r % 2 )); then
    b=$(bench "$BARE_PORT" "$DURATION"); s=$(bench "$SESSION_PORT" "$DURATION")
    [ -z "$NOOP_PORT" ] || n=$(bench "$NOOP_PORT" "$DURATION")
  else
    [ -z "$NOOP_PORT" ] || n=$(bench "$NOOP_PORT" "$DURATION")
    s=$(bench "$SESSION_PORT" "$DURATION"); b=$(bench "$BARE_PORT" "$DURATION")
  fi
  if [ -n "$PEER" ]; then
    # The peer's two ports after them, their order alternating too.
    if (( r % 2 )); then
      pr=$(bench "$PEER_READ_PORT" "$DURATION" "$peer_cookies"); ps=$(bench "$PEER_SAVE_PORT" "$DURATION" "$peer_cookies")
    else
      ps=$(bench "$PEER_SAVE_PORT" "$DURATION" "$peer_cookies"); pr=$(bench "$PEER_READ_PORT" "$DURATION" "$peer_cookies")
    fi
  fi
  ratio=$(awk -v s="$s" -v b="$b" 'BEGIN { printf "%.3f", s / b }')
  ratios+=("$ratio")
  if [ -n "$PEER" ]; then
    prr=$(awk -v n="$pr" -v b="$b" 'BEGIN { printf "%.3f", n / b }')
    psr=$(awk -v n="$ps" -v b="$b" 'BEGIN { printf "%.3f", n / b }')
    preads+=("$prr") psaves+=("$psr")
    printf '%-6s %12s %12s %7s %12s %7s %12s %7s\n' "$r" "$b" "$s" "$ratio" "$pr" "$prr" "$ps" "$psr"
  elif [ -n "$NOOP_PORT" ]; then
    nr=$(awk -v n="$n" -v b="$b" 'BEGIN { printf "%.3f", n / b }')
    noops+=("$nr")
    printf '%-6s %12s %12s %7s %12s %7s\n' "$r" "$b" "$s" "$ratio" "$n" "$nr"
  else
    printf '%-6s %12s %12s %7s\n' "$r" "$b" "$s" "$ratio"
  fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
echo "median ratio (session / bare): $(median "${ratios[@]}")"
[ -z "$NOOP_PORT" ] || echo "median ratio (noop layer / bare): $(median "${noops[@]}")"
if [ -n "$PEER" ]; then
  echo "median ratio (tower-sessions Redis, read / bare): $(median "${preads[@]}")"
  echo "median ratio (tower-sessions Redis, save every request / bare): $(median "${psaves[@]}")"
fi
