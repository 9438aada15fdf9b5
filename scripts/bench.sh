#!/usr/bin/env bash
# The performance figures, in release mode, on this machine: two server processes on one
# fresh MariaDB database (127.0.0.1:3307, see start_test_db.sh), driven by the repo's load
# tool (the loadtest/ crate) and, for the sign-in burst, by wrk against /health.
#   scripts/bench.sh            # every scenario
#   scripts/bench.sh delivery   # one of: delivery cross throughput idle history signin uploads reads group fourway
set -euo pipefail
cd "$(dirname "$0")/.."
only="${1:-all}"
# Two builds: one command for both would unify their dependencies' features (the load
# tool's HTTP client into hyper), and the server measured would not be the image's.
# BENCH_SERVER_BIN runs another build of the server instead (an A/B against an older
# commit, built in a worktree of its own), with this checkout's scenarios.
[ -n "${BENCH_SERVER_BIN:-}" ] || cargo build --release --locked -p messenger >&2
cargo build --release --locked -p loadtest >&2
bin="${CARGO_TARGET_DIR:-target}/release"
server="${BENCH_SERVER_BIN:-$bin/messenger}"
eval "$(scripts/start_test_db.sh)"
db="bench_$(date +%s)"
mariadb --protocol=tcp -h127.0.0.1 -P3307 -umessenger -pmessenger -e "CREATE DATABASE $db"
url="${TEST_MYSQL_URL%/*}/$db"
uploads="$(mktemp -d)"
ulimit -n 65536 2>/dev/null || true

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true;
            mariadb --protocol=tcp -h127.0.0.1 -P3307 -umessenger -pmessenger -e "DROP DATABASE IF EXISTS $db" || true
            rm -rf "$uploads"; }
trap cleanup EXIT

serve() { # port, extra env...
  local port=$1; shift
  env DATABASE_URL="$url" BIND_ADDR="127.0.0.1:$port" JWT_SECRET=bench-secret-0123456789 \
    SIGNUPS_PER_HOUR=1000000 LOGIN_ATTEMPTS_PER_MINUTE=1000000 SENDS_PER_MINUTE=1000000 MAX_STREAMS_PER_USER=1000 MAX_CONNECTIONS=20000 RUST_LOG=warn RDS_POOL_SIZE=32 \
    UPLOAD_DIR="$uploads/store" "$@" \
    "$server" >"/tmp/bench-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "server on $port did not start" >&2; exit 1
}
serve 8101
serve 8102 MIGRATE_ON_START=false
a=${pids[0]}; b=${pids[1]}
lt() { echo; echo "### loadtest $*"; "$bin/loadtest" "$@" || true; }
want() { [ "$only" = all ] || [ "$only" = "$1" ]; }

want delivery   && lt --url http://127.0.0.1:8101 --users 20 --rate 500 --duration 20 --server-pid "$a"
want cross      && lt --url http://127.0.0.1:8101,http://127.0.0.1:8102 --users 20 --rate 500 --duration 20 --server-pid "$a" --server-pid "$b"
want throughput && lt --url http://127.0.0.1:8101 --users 64 --rate 0 --concurrency 64 --duration 15 --server-pid "$a"
want history    && lt --url http://127.0.0.1:8101 --users 32 --open-conversations --history 60 --concurrency 32 --duration 10
want idle       && lt --url http://127.0.0.1:8102 --users 100 --idle-streams 10000 --hold 20 --server-pid "$b"

# Two more processes on the same database, whose sign-ups hash cheaply (ARGON2_*): the
# scenarios below create a thousand users, which at the production cost would take minutes.
if want group || want fourway; then
  serve 8103 MIGRATE_ON_START=false ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1
  serve 8104 MIGRATE_ON_START=false ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1
  c=${pids[2]}; d=${pids[3]}
fi
# CPU seconds (user + system) a process has used so far.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# One group of 1,000 members, each holding a stream on another process than the one the
# messages are posted to, 50 messages a second: each message is one event row, and every
# member's stream must get it.
want group && lt --url http://127.0.0.1:8103,http://127.0.0.1:8104 --group --users 1000 --rate 50 --duration 20 \
  --signup-concurrency 8 --server-pid "$c" --server-pid "$d"
if want fourway; then
  # Four processes on one database at 3,000 messages a second: posted to 8103, streamed
  # from 8104, while 8101 and 8102 hold no stream and only tail the outbox. Their CPU is
  # what tailing costs a process; sampled every second, and averaged over the seconds in
  # which the posting process was busy (the sending, not the set-up).
  samples="$uploads/cpu.txt"
  ( prev=(); while :; do now=(); for p in "$a" "$b" "$c" "$d"; do now+=("$(cpu_seconds "$p")"); done
      [ ${#prev[@]} -gt 0 ] && echo "${now[0]} ${prev[0]} ${now[1]} ${prev[1]} ${now[2]} ${prev[2]} ${now[3]} ${prev[3]}" >>"$samples"
      prev=("${now[@]}"); sleep 1; done ) &
  sampler=$!
  lt --url http://127.0.0.1:8103,http://127.0.0.1:8104 --users 200 --rate 3000 --duration 20 \
    --signup-concurrency 8 --server-pid "$c" --server-pid "$d"
  kill "$sampler"
  awk '{ tail1 = $1 - $2; tail2 = $3 - $4; post = $5 - $6; stream = $7 - $8
         if (post > 0.3) { n++; s1 += tail1; s2 += tail2; sp += post; ss += stream
                           if (tail1 > m1) m1 = tail1; if (tail2 > m2) m2 = tail2 } }
       END { printf "share of one core over the %d s of sending (mean / peak second):\n", n
             printf "  tail only (8101)  %4.1f %% / %4.1f %%\n", 100 * s1 / n, 100 * m1
             printf "  tail only (8102)  %4.1f %% / %4.1f %%\n", 100 * s2 / n, 100 * m2
             printf "  posts    (8103)  %4.1f %%\n", 100 * sp / n
             printf "  streams  (8104)  %4.1f %%\n", 100 * ss / n }' "$samples"
fi
if want reads; then
  # The read endpoints under wrk (15 s, 2 threads, 64 connections), many users' requests
  # in turn (scripts/wrk/requests.lua), on data seeded by scripts/seed_reads.py: 200 users
  # with 10 friends each and 60 messages per friendship. Comparable with other servers.
  echo; echo "### reads (wrk -t2 -c64 -d15s): seeding..."
  python3 scripts/seed_reads.py http://127.0.0.1:8101 "$uploads/reads" --users "${READS_USERS:-200}"
  # Each scenario runs twice: 5 s from cold (the history cache fills on first reads, as
  # after a deploy), then the measured 15 s.
  # READS_SCENARIOS picks some of them (sends and /health still run after).
  for scenario in ${READS_SCENARIOS:-latest older friends users chats}; do
    for pass in cold:5 measured:15; do
      echo; echo "### reads: $scenario (${pass%:*}, ${pass#*:} s)"
      WRK_REQUESTS="$uploads/reads/$scenario.txt" wrk -t2 -c64 -d"${pass#*:}s" --latency \
        -s scripts/wrk/requests.lua http://127.0.0.1:8101 | grep -E 'Requests/sec|Non-2xx|Latency|  (50|90|99)%'
    done
  done
  # Sends last (they add to the history the reads above measured): the same 64 connections.
  echo; echo "### sends: POST /api/messages/ (15 s)"
  WRK_REQUESTS="$uploads/reads/sends.txt" wrk -t2 -c64 -d15s --latency \
    -s scripts/wrk/requests.lua http://127.0.0.1:8101 | grep -E 'Requests/sec|Non-2xx|Latency|  (50|90|99)%'
  # The same, all from one sender to one friend (one user's requests, as a single-token wrk
  # script would measure): each batch then checks one pair's friendship.
  echo; echo "### sends: POST /api/messages/, one sender to one friend (15 s)"
  head -n 1 "$uploads/reads/sends.txt" >"$uploads/reads/one-pair.txt"
  WRK_REQUESTS="$uploads/reads/one-pair.txt" wrk -t2 -c64 -d15s --latency \
    -s scripts/wrk/requests.lua http://127.0.0.1:8101 | grep -E 'Requests/sec|Non-2xx|Latency|  (50|90|99)%'
  echo; echo "### reads: /health"
  wrk -t2 -c64 -d15s --latency http://127.0.0.1:8101/health | grep -E 'Requests/sec|Non-2xx|Latency|  (50|90|99)%'
fi
if want signin; then
  echo; echo "### /health latency (wrk, 4 connections) while 20 sign-ins run at once, repeatedly"
  curl -fs -X POST "http://127.0.0.1:8101/api/auth/sign-up?username=burst" \
    -d 'grant_type=password&username=burst@example.com&password=Password231' >/dev/null
  ( start=$SECONDS; rounds=0; while [ $((SECONDS - start)) -lt 12 ]; do
      for _ in $(seq 1 20); do curl -s -o /dev/null -X POST http://127.0.0.1:8101/api/auth/sign-in \
        -d 'username=burst@example.com&password=Password231' & done; wait; rounds=$((rounds + 1)); done
    echo "sign-ins: $((rounds * 20)) in $((SECONDS - start)) s, 20 at a time" ) &
  burst=$!
  sleep 1
  wrk -t1 -c4 -d10s --latency http://127.0.0.1:8101/health
  wait "$burst" || true
fi
if want uploads; then
  # The 50 curl processes run at nice 19 (UPLOAD_CLIENT_NICE): in production the uploaders
  # are on other machines, and on two cores shared with the server, 50 clients at equal
  # priority measure the scheduler more than the server. PROBE_PORT=8102 asks the second,
  # idle server instead: the machine's own tail under the same load, for comparison.
  echo; echo "### /health latency (wrk, 4 connections, each asking every 5 ms) while 50 uploads of 5 MB run at once, repeatedly"
  token="$(curl -fs -X POST "http://127.0.0.1:8101/api/auth/sign-up?username=uploader" \
    -d 'grant_type=password&username=uploader@example.com&password=Password231' | jq -r .access_token)"
  # Half plain files (spooled and stored), half images (also decoded, re-encoded, thumbnailed):
  # 5 MB of random bytes, and a 1,300 x 1,300 PNG of noise (about 5 MB, 1.7 megapixels).
  head -c 5000000 /dev/urandom >"$uploads/random.bin"
  python3 - "$uploads/noise.png" <<'PY'
import os, struct, sys, zlib
w = h = 1300
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rows = b"".join(b"\0" + os.urandom(w * 3) for _ in range(h))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
  grep VmRSS "/proc/$a/status"
  ( start=$SECONDS; rounds=0
    while [ $((SECONDS - start)) -lt 12 ]; do
      for i in $(seq 1 50); do
        f=random.bin; [ $((i % 2)) = 0 ] && f=noise.png
        nice -n "${UPLOAD_CLIENT_NICE:-19}" curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $token" \
          -F "file=@$uploads/$f" http://127.0.0.1:8101/api/attachments >>"$uploads/codes" &
      done
      wait; rounds=$((rounds + 1))
    done
    echo "uploads: $((rounds * 50)) of 5 MB in $((SECONDS - start)) s, 50 at a time; answers: $(sort "$uploads/codes" | uniq -c | tr -s ' \n' ' ')" ) &
  burst=$!
  sleep 1
  wrk -t1 -c4 -d10s --latency -s scripts/wrk/probe.lua "http://127.0.0.1:${PROBE_PORT:-8101}/health"
  wait "$burst" || true
  grep -E 'VmRSS|VmHWM' "/proc/$a/status"
fi
