#!/usr/bin/env bash
# Runs warmline's SIPp scenarios against a running warmline.
#   sipp-scenarios/run.sh SIP_HOST:PORT [HTTP_HOST:PORT]
# SIP-only flows always run; flows that need warmline to act (hold by warmline, outbound
# calls to a SIPp agent) run when the HTTP API address is given. The CANCEL flow needs
# `[sip] answer_after_ms` >= 1000 on the target and runs when WARMLINE_RINGS=1.
# Exit status: 0 when every scenario passed. Every SIPp run is bounded (-m, -timeout).
set -u
here=$(cd "$(dirname "$0")" && pwd)
sip=${1:?usage: run.sh SIP_HOST:PORT [HTTP_HOST:PORT]}
http=${2:-}
host=${sip%:*}
local_ip=${LOCAL_IP:-$host}
base_port=${SIPP_BASE_PORT:-$((15000 + RANDOM % 20000))}
load_calls=${LOAD_CALLS:-200}
load_rate=${LOAD_RATE:-100}
command -v sipp >/dev/null || { echo "sipp not found (Debian: apt-get install sip-tester)"; exit 2; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
pass=0; fail=0
n=0

sipp_run() { # name, extra args...
  local name=$1; shift
  n=$((n + 1))
  if (cd "$work" && timeout 60 sipp "$@" -i "$local_ip" -p $((base_port + n)) -nostdin \
        -timeout 45s -timeout_error -trace_err >"$work/$name.out" 2>&1); then
    echo "PASS $name"; pass=$((pass + 1))
  else
    echo "FAIL $name (sipp exit $?)"; fail=$((fail + 1))
    tail -n 40 "$work/$name.out" | grep -E 'Unexpected|Aborted|Failed|error' | head -5
    cat "$work"/*_errors.log 2>/dev/null | tail -n 20
  fi
}

http_json() { # method path [body]
  curl -sS -m 60 -X "$1" -H 'content-type: application/json' ${3:+-d "$3"} "http://$http$2"
}

call_id_of() { # wait for a call with this Call-ID to be confirmed
  for _ in $(seq 1 50); do
    if http_json GET "/v1/calls/$1" 2>/dev/null | grep -q '"state":"confirmed"'; then return 0; fi
    sleep 0.1
  done
  return 1
}

sipp_run options "$sip" -sf "$here/options.xml" -m 1
sipp_run basic_udp "$sip" -sf "$here/uac_basic.xml" -m 3 -r 3 -d 500
sipp_run basic_tcp "$sip" -sf "$here/uac_basic.xml" -m 2 -r 2 -d 200 -t t1
sipp_run caller_hold_resume "$sip" -sf "$here/uac_hold.xml" -m 2
sipp_run load_smoke "$sip" -sf "$here/uac_load.xml" -m "$load_calls" -r "$load_rate"
if [ "${WARMLINE_RINGS:-0}" = 1 ]; then
  sipp_run cancel_before_answer "$sip" -sf "$here/uac_cancel.xml" -m 1
fi

if [ -n "$http" ]; then
  # warmline holds the caller; the first re-INVITE meets 491 and must be retried.
  cid="glare-$$-$RANDOM@$local_ip"
  n=$((n + 1)); p=$((base_port + n))
  (cd "$work" && timeout 60 sipp "$sip" -sf "$here/uac_hold_by_warmline_491.xml" -m 1 -cid_str "$cid" \
      -i "$local_ip" -p $p -nostdin -timeout 45s -timeout_error >"$work/glare.out" 2>&1) &
  sp=$!
  if call_id_of "$cid" && http_json POST "/v1/calls/$cid/hold" >/dev/null && wait $sp; then
    echo "PASS warmline_hold_491_retry"; pass=$((pass + 1))
  else
    echo "FAIL warmline_hold_491_retry"; fail=$((fail + 1)); kill $sp 2>/dev/null
  fi

  # outbound calls to a SIPp agent: expected typed outcome per scenario
  for spec in "uas_answer:answered:" "uas_auth:answered:,\"auth_username\":\"alice\",\"auth_password\":\"s3cret\"" \
              "uas_busy:busy:" "uas_noanswer:no_answer:"; do
    sc=${spec%%:*}; rest=${spec#*:}; want=${rest%%:*}; extra=${rest#*:}
    n=$((n + 1)); p=$((base_port + n))
    (cd "$work" && timeout 60 sipp -sf "$here/$sc.xml" -m 1 -i "$local_ip" -p $p -nostdin \
        -timeout 45s -timeout_error >"$work/$sc.out" 2>&1) &
    sp=$!
    sleep 0.3
    out=$(http_json POST /v1/calls "{\"to\":\"sip:agent@$local_ip:$p\",\"ring_timeout_s\":2$extra}")
    if echo "$out" | grep -q "\"outcome\":\"$want\""; then
      id=$(echo "$out" | sed -E 's/.*"id":"([^"]+)".*/\1/')
      [ "$want" = answered ] && { sleep 0.2; http_json DELETE "/v1/calls/$id" >/dev/null; }
      if wait $sp; then echo "PASS outbound_$sc ($want)"; pass=$((pass + 1)); continue; fi
    fi
    echo "FAIL outbound_$sc: wanted $want, got $out"; fail=$((fail + 1)); kill $sp 2>/dev/null
  done
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
