#!/usr/bin/env bash
# Same-run comparison of two builds of the HTTP bench server (e.g. before and
# after a change): both servers run at once, on different ports, and the rounds
# alternate between them and between their bare and session ports.
#
#   crates/sessionary-bench/http/compare.sh OLD_BINARY NEW_BINARY
#
# Build OLD_BINARY from another checkout, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old/target \
#     cargo build --release -p sessionary-bench --bin http_bench_server)
#
# Environment: ROUNDS [6], DURATION [5s], THREADS [2], CONNECTIONS [64],
# SESSIONS [10000], COOKIES [all], PIN [unset; `0:1` = servers on CPU 0, wrk on CPU 1].
# Prints, per build and port, the median requests/s and the server's CPU time per
# request (user and system, from /proc/<pid>/stat), then the per-round ratios.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
SESSIONS=${SESSIONS:-10000}
COOKIES=${COOKIES:-$SESSIONS}
PIN=${PIN:-}
here=$(cd "$(dirname "$0")" && pwd)
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
server_pin=() wrk_pin=()
if [ -n "$PIN" ]; then
  server_pin=(taskset -c "${PIN%%:*}") wrk_pin=(taskset -c "${PIN#*:}")
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start() { # name binary bare_port session_port
  "${server_pin[@]}" "$2" "$3" "$4" "$SESSIONS" "$work/$1.tokens" >"$work/$1.log" 2>&1 &
  pids+=($!)
  eval "pid_$1=$!"
}
start old "$1" 3601 3602
start new "$2" 3701 3702
for _ in $(seq 1 600); do
  grep -q ready "$work/old.log" 2>/dev/null && grep -q ready "$work/new.log" 2>/dev/null && break
  sleep 0.1
done
for n in old new; do
  grep -q ready "$work/$n.log" || { echo "$n server did not start" >&2; cat "$work/$n.log" >&2; exit 1; }
  head -n "$COOKIES" "$work/$n.tokens" >"$work/$n.cookies"
done
tck=$(getconf CLK_TCK)

run() { # name port label duration
  local pid_var="pid_$1" u0 s0 u1 s1 out
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/${!pid_var}/stat")
  out=$("${wrk_pin[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$4" -s "$here/cookies.lua" \
    "http://127.0.0.1:$2/" -- "$work/$1.cookies")
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/${!pid_var}/stat")
  if echo "$out" | grep -q Non-2xx; then echo "non-2xx responses" >&2; exit 1; fi
  echo "$out" | awk -v l="$3" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$tck" \
    '/requests in/ {n=$1} /^Requests\/sec:/ {r=$2} END {printf "%s %s %.3f %.3f\n", l, r, u/t/n*1e6, s/t/n*1e6}'
}
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $SESSIONS sessions, $COOKIES cookies rotated, ROUNDS=$ROUNDS${PIN:+, pinned server:wrk CPUs $PIN}"
for w in "old 3601" "old 3602" "new 3701" "new 3702"; do run $w warmup 2s >/dev/null; done
results=$work/results
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then order=("old 3601 old-bare" "old 3602 old-session" "new 3702 new-session" "new 3701 new-bare")
  else order=("new 3701 new-bare" "new 3702 new-session" "old 3602 old-session" "old 3601 old-bare"); fi
  for o in "${order[@]}"; do run $o "$DURATION" | sed "s/^/$r /" >>"$results"; done
done
median() { sort -n | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
printf '%-12s %10s %10s %10s\n' "" "req/s" "user µs" "sys µs"
for l in old-bare old-session new-bare new-session; do
  printf '%-12s %10s %10s %10s\n' "$l" \
    "$(awk -v l=$l '$2 == l {print $3}' "$results" | median)" \
    "$(awk -v l=$l '$2 == l {print $4}' "$results" | median)" \
    "$(awk -v l=$l '$2 == l {print $5}' "$results" | median)"
done
for n in old new; do
  ratios=$(awk -v n=$n '$2 == n "-bare" {b[$1]=$3} $2 == n "-session" {s[$1]=$3}
    END {for (r in b) printf "%.3f\n", s[r]/b[r]}' "$results")
  echo "$n session/bare per round: $(echo "$ratios" | sort -n | tr '\n' ' ')median $(echo "$ratios" | median)"
done
