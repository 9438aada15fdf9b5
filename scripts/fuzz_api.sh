#!/usr/bin/env bash
# Fuzzes the JSON API against its own OpenAPI document: starts the server on a free port
# with a fresh SQLite database, makes a user (and a friend, a group and a message, so that
# small ids name real things) through the API, and runs Schemathesis over every operation
# of /api/openapi.json as that user. Fails on any 5xx, any status, content type or body
# the document does not describe, or a server that crashed. `.ci/run` runs it.
#
#   scripts/fuzz_api.sh [path/to/messenger]      (default: the release build, else debug)
#
# FUZZ_EXAMPLES (default 60) bounds the generated cases per operation; Schemathesis comes
# from the tools virtualenv (.ci/run installs it there, pinned).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${CARGO_TARGET_DIR:-target}"
BIN="${1:-}"
if [ -z "$BIN" ]; then
  for candidate in "$TARGET/release/messenger" "$TARGET/debug/messenger"; do
    [ -x "$candidate" ] && { BIN="$candidate"; break; }
  done
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "fuzz_api: no messenger binary; run cargo build first" >&2; exit 2; }
TOOLS="${MESSENGER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/messenger-ci-tools}"
SCHEMATHESIS="$TOOLS/venv/bin/schemathesis"
[ -x "$SCHEMATHESIS" ] || { echo "fuzz_api: $SCHEMATHESIS missing: $TOOLS/venv/bin/pip install schemathesis" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/messenger-fuzz.XXXXXX")"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export FUZZ_BASE_URL="http://127.0.0.1:$PORT"
# Limits far above what a fuzz run reaches, so that the cases test the routes' logic
# rather than the rate limiter (whose 429s the document describes all the same).
env -i PATH="$PATH" HOME="$HOME" \
  DATABASE_URL="sqlite://$WORK/fuzz.db" BIND_ADDR="127.0.0.1:$PORT" \
  JWT_SECRET="fuzzing-secret-0123456789" UPLOAD_DIR="$WORK/uploads" \
  ARGON2_MEMORY_KIB=1024 ARGON2_ITERATIONS=1 ARGON2_PARALLELISM=1 \
  SIGNUPS_PER_HOUR=1000000 LOGIN_ATTEMPTS_PER_MINUTE=1000000 \
  PASSWORD_RESETS_PER_HOUR=1000000 FRIEND_REQUESTS_PER_HOUR=1000000 SENDS_PER_MINUTE=1000000 \
  LOG_FORMAT=json RUST_LOG=warn NO_COLOR=1 \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

server_log() { echo "--- server log (last 40 lines) ---"; tail -n 40 "$WORK/server.log"; }
for _ in $(seq 100); do
  curl -fsS "$FUZZ_BASE_URL/health/live" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "fuzz_api: the server did not start"; server_log; exit 1; }
  sleep 0.1
done

# The fuzzing user, a friend and a group: made through the API, as a client would.
export FUZZ_EMAIL="fuzzer@example.com" FUZZ_PASSWORD="Fuzz3r-secret"
api() { curl -fsS "$@"; }
sign_up() { # username email → access token
  api -X POST "$FUZZ_BASE_URL/api/auth/sign-up?username=$1" \
    --data-urlencode grant_type=password --data-urlencode "username=$2" \
    --data-urlencode "password=$FUZZ_PASSWORD" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
sign_up fuzzer "$FUZZ_EMAIL" >/dev/null
FRIEND_TOKEN="$(sign_up fuzzfriend fuzzfriend@example.com)"
TOKEN="$(api -X POST "$FUZZ_BASE_URL/api/auth/sign-in" --data-urlencode grant_type=password \
  --data-urlencode "username=$FUZZ_EMAIL" --data-urlencode "password=$FUZZ_PASSWORD" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
api -X POST -H "Authorization: Bearer $TOKEN" "$FUZZ_BASE_URL/api/friends/requests?username=fuzzfriend" >/dev/null
api -X POST -H "Authorization: Bearer $FRIEND_TOKEN" "$FUZZ_BASE_URL/api/friends/requests/accept?requester_username=fuzzer" >/dev/null
api -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"group_chat_name": "fuzzing", "usernames": ["fuzzfriend"]}' "$FUZZ_BASE_URL/api/group_chats/" >/dev/null
api -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"content": "hello", "group_chat_id": null}' "$FUZZ_BASE_URL/api/messages/?addressee_username=fuzzfriend" >/dev/null

# The event stream never ends, so a request/response fuzzer cannot judge it: its
# errors are covered by the integration tests (tests/integration/live.rs).
# Run from the scratch directory: Schemathesis keeps a cache in `.schemathesis/` there.
status=0
HOOKS_DIR="$PWD/scripts"
cd "$WORK"
PYTHONPATH="$HOOKS_DIR${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=fuzz_api_auth \
  "$SCHEMATHESIS" run "$FUZZ_BASE_URL/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --exclude-path /events \
  --max-examples "${FUZZ_EXAMPLES:-60}" \
  --workers 2 --request-timeout 10 --seed "${FUZZ_SEED:-17}" \
  --suppress-health-check all \
  --report junit --report-dir "${FUZZ_REPORT_DIR:-$WORK/report}" \
  || status=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "fuzz_api: the server crashed during the run"; server_log; exit 1
fi
if grep -q '"level":"ERROR"' "$WORK/server.log"; then
  echo "fuzz_api: the server logged errors"; grep '"level":"ERROR"' "$WORK/server.log" | head -20
  status=1
fi
[ "$status" -eq 0 ] || { server_log; exit "$status"; }
echo "fuzz_api: no 5xx, every answer as the document says"
