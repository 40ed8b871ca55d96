#!/usr/bin/env bash
# Walks the Sessionary service API with curl against a running server:
# create, verify, patch data, regenerate, old token refused with its reason,
# list, revoke, verify refused with its reason.
#
#   sessionary &                      # in another terminal: cargo run -p sessionary-server
#   scripts/api-walk.sh [URL]         # URL defaults to http://127.0.0.1:8080
#
# The API key comes from $SESSIONARY_API_KEY, else from $SESSIONARY_DATA_DIR/api-key
# (default ./sessionary-data/api-key). Needs only bash, curl, grep and sed.
set -euo pipefail

URL="${1:-${SESSIONARY_URL:-http://127.0.0.1:8080}}"
DATA_DIR="${SESSIONARY_DATA_DIR:-./sessionary-data}"
KEY="${SESSIONARY_API_KEY:-}"
if [[ -z "$KEY" ]]; then
  if [[ -r "$DATA_DIR/api-key" ]]; then
    KEY="$(head -n 1 "$DATA_DIR/api-key" | tr -d '[:space:]')"
  else
    echo "no API key: set SESSIONARY_API_KEY or run from the folder holding sessionary-data/" >&2
    exit 2
  fi
fi

USER_ID="walk-$$"
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
STATUS=""
BODY=""
FAILED=0

# call METHOD PATH [JSON] [extra curl args...]: sets STATUS and BODY.
call() {
  local method="$1" path="$2" data="${3:-}"
  shift 3 || shift $#
  local args=(-sS -o "$OUT" -w '%{http_code}' -X "$method"
    -H "Authorization: Bearer $KEY" "$@")
  if [[ -n "$data" ]]; then
    args+=(-H 'Content-Type: application/json' --data "$data")
  fi
  STATUS="$(curl "${args[@]}" "$URL$path")"
  BODY="$(cat "$OUT")"
}

# field NAME: the first "NAME":"value" string in BODY.
field() {
  printf '%s' "$BODY" | grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | sed 's/.*:"\(.*\)"/\1/'
}

step() {
  local want="$1" what="$2"
  if [[ "$STATUS" == "$want" ]]; then
    printf 'ok    %-48s %s\n' "$what" "$STATUS"
  else
    printf 'FAIL  %-48s got %s, expected %s\n      %s\n' "$what" "$STATUS" "$want" "$BODY"
    FAILED=1
  fi
}

expect_reason() {
  local want="$1"
  local got
  got="$(field reason)"
  if [[ "$got" == "$want" ]]; then
    printf 'ok    %-48s reason=%s\n' "  refusal reason" "$got"
  else
    printf 'FAIL  %-48s reason=%s, expected %s\n' "  refusal reason" "$got" "$want"
    FAILED=1
  fi
}

curl -fsS "$URL/healthz" >/dev/null || { echo "no server at $URL" >&2; exit 2; }
echo "Walking the API at $URL as user $USER_ID"

call POST /v1/sessions "{\"user\":\"$USER_ID\",\"roles\":[\"user\"],\"data\":{\"cart\":[]},\"device\":{\"user_agent\":\"curl/api-walk\"}}"
step 201 "create a session"
TOKEN="$(field token)"
ID="$(field id)"
echo "      session id $ID (the token stays in this script)"

call POST /v1/sessions/verify "{\"token\":\"$TOKEN\"}"
step 200 "verify the token"

call PATCH "/v1/sessions/$ID/data" '{"cart":["book"]}' -H 'If-Match: "1"'
step 200 "patch data at version 1"
echo "      $BODY"

call PATCH "/v1/sessions/$ID/data" '{"cart":[]}' -H 'If-Match: "1"'
step 409 "patch again at the stale version 1"

call POST "/v1/sessions/$ID/regenerate" '{"aal":2}'
step 200 "regenerate (step-up to AAL2)"
NEW_TOKEN="$(field token)"

call POST /v1/sessions/verify "{\"token\":\"$TOKEN\"}"
step 401 "verify the old token"
expect_reason regenerated

call POST /v1/sessions/verify "{\"token\":\"$NEW_TOKEN\"}"
step 200 "verify the new token"

call GET "/v1/users/$USER_ID/sessions"
step 200 "list the user's sessions"
echo "      $BODY" | cut -c 1-160

call DELETE "/v1/sessions/$ID"
step 204 "revoke the session"

call POST /v1/sessions/verify "{\"token\":\"$NEW_TOKEN\"}"
step 401 "verify after revocation"
expect_reason revoked_by_admin

call POST /v1/sessions/verify '{"token":"not-a-token"}'
step 401 "verify a malformed token"
expect_reason malformed

if [[ "$FAILED" == 0 ]]; then
  echo "API walk passed"
else
  echo "API walk FAILED"
  exit 1
fi
