# Sourced by the call-setup load scripts (sip_load.sh, tls_load.sh): one SIPp step at a
# rate, and a climb over "${rates[@]}" until a step is not clean. Expects root, work, step_s
# and rates set; SCENARIO (default uac_load.xml) and SIPP_PORT (default 5961) may be set.

udp_drops() { awk '/^Udp:/ {n++; if (n==2) print $6}' /proc/net/snmp; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# step TARGET LABEL RATE -> prints one line, returns 0 when clean (<= 0.1 % failed and set-up
# p95 within MAX_P95_MS: a rate every call survives but waits a second for is not one to run at)
step() {
  local target=$1 label=$2 rate=$3 pid=${4:-} calls=$(( $3 * step_s ))
  local d0 c0=0 c1=0
  d0=$(udp_drops); [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
  (cd "$work" && rm -f ./*_rtt.csv && timeout $((step_s * 4 + 30)) sipp "$target" -sf "$root/sipp-scenarios/${SCENARIO:-uac_load.xml}" \
      -i 127.0.0.1 -p ${SIPP_PORT:-5961} -r "$rate" -m "$calls" -l $((rate * 4)) -nostdin -timeout $((step_s * 3 + 20))s \
      -trace_rtt -rtt_freq 100 >"$work/out.txt" 2>&1) || true
  [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
  local ok fail
  ok=$(grep -E '^ +Successful call' "$work/out.txt" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
  fail=$(grep -E '^ +Failed call' "$work/out.txt" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
  ok=${ok:-0}; fail=${fail:-0}
  local lost=$(( calls - ok - fail )); [ $lost -gt 0 ] && fail=$((fail + lost))
  local p50 p95
  read -r p50 p95 < <(cat "$work"/*_rtt.csv 2>/dev/null | awk -F';' 'NR>1 && $2 ~ /^[0-9.]+$/ {print $2}' | sort -n |
    awk '{v[NR]=$1} END {if (NR==0) {print "- -"} else {a=int(NR*0.5)+1; b=int(NR*0.95)+1; if (a>NR) a=NR; if (b>NR) b=NR; printf "%.2f %.2f\n", v[a], v[b]}}')
  local cpu="-"
  [ -n "$pid" ] && cpu=$(awk -v t=$((c1 - c0)) -v s="$step_s" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f%%", 100 * t / hz / s}')
  printf '%-9s rate %5d cps  calls %6d  failed %5d  setup p50 %6s ms  p95 %6s ms  cpu %5s  udp drops %s\n' \
    "$label" "$rate" "$calls" "$fail" "$p50" "$p95" "$cpu" $(( $(udp_drops) - d0 ))
  echo "$p95" >"$work/last_p95"
  [ $((fail * 1000)) -le "$calls" ] && awk -v p="$p95" -v m="${MAX_P95_MS:-5}" 'BEGIN {exit !(p != "-" && p + 0 <= m + 0)}'
}

# climb TARGET LABEL PID -> echoes "best_rate p95". A step that is not clean is run once more
# before the climb stops: on a shared host a second of stolen CPU fails one 5 s step of any
# target (SIPp's own uas included) and would end its climb at a rate it holds; a rate the
# target cannot hold fails both times. Every target gets the same second chance.
climb() {
  local best=0 best_p95="-"
  for r in "${rates[@]}"; do
    if step "$1" "$2" "$r" "${3:-}" >&2 || { echo "          (not clean: once more)" >&2; step "$1" "$2" "$r" "${3:-}" >&2; }; then
      best=$r; best_p95=$(cat "$work/last_p95")
    else break; fi
  done
  echo "$best $best_p95"
}

