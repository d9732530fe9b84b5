# Sourced by the load scripts: how much CPU the hypervisor took from this VM during a run.
# A bench on a host that steals measures the host (seen: 43% stolen on average, 88% at peak,
# and every tail figure 5-20x worse), so each script prints it with its figures.
#   steal_start            at the start of the measured part
#   steal_report           at the end: prints the share, and a warning from 10%
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal.
_cpu_times() { awk '/^cpu / {t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9}' /proc/stat; }
steal_start() { read -r _steal_total0 _steal0 < <(_cpu_times); }
steal_report() {
  local total steal pct
  read -r total steal < <(_cpu_times)
  pct=$(( (steal - _steal0) * 100 / (total - _steal_total0 + 1) ))
  echo "CPU steal during the run: ${pct}% of this machine's CPU time"
  if [ "$pct" -ge 10 ]; then
    echo "WARNING: the host took ${pct}% of the CPU; these figures measure the host, not warmline: run again"
  fi
}
