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

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p sessionary-bench --bin http_bench_server
server_pin=() wrk_pin=()
if [ -n "$PIN" ]; then
  server_pin=(taskset -c "${PIN%%:*}") wrk_pin=(taskset -c "${PIN#*:}")
fi
tokens=$(mktemp)
log=$(mktemp)
"${server_pin[@]}" "${CARGO_TARGET_DIR:-$root/target}/release/http_bench_server" \
  "$BARE_PORT" "$SESSION_PORT" "$SESSIONS" "$tokens" "${NOOP_PORT:-0}" >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$tokens" "$log" "${cookies:-}"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
  grep -q ready "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
grep -q ready "$log" || { echo "server did not start" >&2; exit 1; }
cookies=$(mktemp)
head -n "$COOKIES" "$tokens" >"$cookies"

# A request with a cookie must get `Sessionary-Expires` (the session was found).
# The sessions are bound to the browser user agent `cookies.lua` sends.
first=$(head -n1 "$tokens")
ua='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
if ! curl -s -o /dev/null -D - -A "$ua" -H "Cookie: session=$first" "http://127.0.0.1:$SESSION_PORT$URL_PATH" | grep -qi '^sessionary-expires:'; then
  echo "session port did not recognise the cookie" >&2; exit 1
fi

bench() { # port duration -> requests/s
  "${wrk_pin[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" -s "$here/cookies.lua" \
    "http://127.0.0.1:$1$URL_PATH" -- "$cookies" |
    awk '/^Requests\/sec:/ {print $2} /Non-2xx/ {print "non-2xx responses" > "/dev/stderr"; exit 1}'
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, path $URL_PATH, $SESSIONS sessions, $(wc -l <"$cookies") cookies rotated, $(nproc) cores, ROUNDS=$ROUNDS${PIN:+, pinned server:wrk CPUs $PIN}"
bench "$BARE_PORT" "$WARMUP" >/dev/null
bench "$SESSION_PORT" "$WARMUP" >/dev/null
[ -z "$NOOP_PORT" ] || bench "$NOOP_PORT" "$WARMUP" >/dev/null

ratios=() noops=()
if [ -n "$NOOP_PORT" ]; then
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
  ratio=$(awk -v s="$s" -v b="$b" 'BEGIN { printf "%.3f", s / b }')
  ratios+=("$ratio")
  if [ -n "$NOOP_PORT" ]; then
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
