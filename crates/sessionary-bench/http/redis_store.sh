#!/usr/bin/env bash
# Store-level benchmark of issue #6: `SessionManager::verify` over `RedisStore`
# from 50 concurrent tasks against `redis-benchmark -t get -c 50` on the same,
# private redis-server (so INFO commandstats counts only this run), in the same
# run, alternating.
#
#   crates/sessionary-bench/http/redis_store.sh
#
# Environment: ROUNDS [3], SECONDS_PER_ROUND [10], TASKS [50], SESSIONS [10000],
# PORT [6390], NO_BUILD [unset].
set -euo pipefail
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_ROUND:-10}
TASKS=${TASKS:-50}
SESSIONS=${SESSIONS:-10000}
PORT=${PORT:-6390}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p sessionary-bench --bin redis_verify_bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/redis_verify_bench"
dir=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
# As many GETs as the store bench does in SECS, roughly: redis-benchmark stops by count.
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $(nproc) cores, $TASKS tasks / -c $TASKS, $SESSIONS sessions"
printf '%-6s %14s %14s %7s %s\n' round redis-get/s verify/s ratio commands/verify
ratios=()
for r in $(seq 1 "$ROUNDS"); do
  out=$("$bin" "redis://127.0.0.1:$PORT" "$SESSIONS" "$TASKS" "$SECS")
  v=$(awk '/^verifications\/s:/ {print $2}' <<<"$out")
  c=$(awk '/^commands per verification:/ {print $4}' <<<"$out")
  n=$(awk -v v="$v" -v s="$SECS" 'BEGIN { printf "%d", v * s }')
  g=$(redis-benchmark -p "$PORT" -t get -c "$TASKS" -n "$n" -r 10000 --csv | awk -F'","' '/^"GET"/ {print $2}')
  ratio=$(awk -v v="$v" -v g="$g" 'BEGIN { printf "%.3f", v / g }')
  ratios+=("$ratio")
  printf '%-6s %14s %14s %7s %s\n' "$r" "${g%.*}" "$v" "$ratio" "$c"
  [ "$r" != 1 ] || sed -n '/per verification$/p' <<<"$out"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END { print "median ratio (verify / GET): " a[int((NR+1)/2)] }'
