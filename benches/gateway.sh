# Sourced by the load scripts: the part of a bench gateway's config every one of them
# writes the same way.
#   wl_config SIP_PORT MAX_CALLS RTP_LO RTP_HI HTTP_LISTEN LOG_LEVEL [ALLOW_FROM]
# prints [sip], [media], [http] and [log]; the script appends what is its own.
wl_config() {
  cat <<TOML
[sip]
listen = ["udp:127.0.0.1:$1"]
max_calls = $2
# The load generator is a trusted trunk, as a PBX in allow_from would be: the per-source
# request rate (rate_limit_per_s) does not apply to it. An empty ALLOW_FROM trusts nobody.
allow_from = [${7-\"127.0.0.0/8\"}]
[media]
rtp_port_range = [$3, $4]
[http]
listen = "$5"
[log]
level = "$6"
TOML
}

# wl_wait_ready LOG PID PORT: waits until the gateway has bound its SIP PORT (UDP or TCP), which
# it does only once it is ready: not the "warmline ready" log line, which a bench running at
# [log] level = "warn" never sees. A first run on a fresh machine provisions the speech model
# before that (minutes), and a load step sent into a gateway still starting measures the start,
# not the gateway: so the deadline is long (WL_READY_S, default 900 s), and a gateway that
# exits first fails the bench at once with its log. The port must be bound by PID itself: a
# gateway left over from another run, still draining on the port, once answered a whole
# bench while the bench's own gateway had exited on the taken port.
wl_wait_ready() {
  local deadline=$((SECONDS + ${WL_READY_S:-900}))
  until [[ "$(ss -Hlntup "sport = :$3" 2>/dev/null)" == *"pid=$2,"* ]]; do
    if ! kill -0 "$2" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "warmline did not become ready (it has not bound port $3); its log:" >&2; cat "$1" >&2; exit 1
    fi
    sleep 0.1
  done
}
