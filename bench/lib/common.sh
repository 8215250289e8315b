# bench/lib/common.sh: what every side-by-side benchmark script shares. Source it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# It expects SAY_NAME (the prefix of progress lines) and uses SETTLE_MAX (default 60).
# PIDS collects started servers; cleanup_pids kills what is still running.

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
SETTLE_MAX=${SETTLE_MAX:-60}
PIDS=()

say() { printf '[%s %s] %s\n' "${SAY_NAME:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }

cleanup_pids() {
  local p
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  done
}

# A free loopback TCP port (nothing answers a connect on it).
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}

# CPU seconds (user+system) of a process; the name in (...) may hold spaces.
cpu_s() { sed 's/.*) //' "/proc/$1/stat" | awk -v t="$CLK_TCK" '{printf "%.2f", ($12+$13)/t}'; }
# A /proc/PID/status field in kB, as bytes.
status_b() { awk -v f="$2:" '$1==f {print $2*1024}' "/proc/$1/status"; }

wait_ready() { # url pid name
  local i
  for i in $(seq 1 600); do
    if ! kill -0 "$2" 2>/dev/null; then say "$3 exited during start-up"; return 1; fi
    if curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  say "$3 not ready after 60s"; return 1
}

# Waits until the process uses < 5% of a core for 3 s in a row (or SETTLE_MAX s).
settle() { # pid → prints seconds waited
  local pid=$1 prev now quiet=0 waited=0
  prev=$(cpu_s "$pid")
  while (( waited < SETTLE_MAX && quiet < 3 )); do
    sleep 1; waited=$((waited + 1))
    now=$(cpu_s "$pid")
    if awk -v a="$prev" -v b="$now" 'BEGIN{exit !(b-a < 0.05)}'; then quiet=$((quiet + 1)); else quiet=0; fi
    prev=$now
  done
  echo "$waited"
}

# SIGTERM, then wait up to 300 s for the exit (SIGKILL after that, with a notice).
# Not in $(...): only this shell can reap its child. Sets STOP_STATUS, STOP_SECONDS.
stop() { # pid name
  local pid=$1 i st exited=0 t0
  t0=$(date +%s.%N)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 3000); do
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo gone)
    if [[ "$st" == Z || "$st" == gone ]]; then exited=1; break; fi
    sleep 0.1
  done
  if (( ! exited )); then
    say "$2 did not exit 300 s after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  st=0; wait "$pid" 2>/dev/null || st=$?
  STOP_STATUS=$st
  STOP_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
}

# The machine, for the head of a results section.
machine_line() {
  local cpu_model mem_gib
  cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem_gib=$(awk '/^MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)
  echo "$(nproc) cores ($cpu_model), ${mem_gib} GiB RAM, Linux $(uname -r)"
}

# Replaces one benchmark's section of a results file, keeping every other section:
# the section is the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
# (appended at the end when the file has none yet).
write_section() { # results_file name section_file
  local results=$1 name=$2 body=$3 tmp
  tmp=$(mktemp)
  touch "$results"
  awk -v name="$name" -v body="$body" '
    BEGIN { open = "<!-- bench:" name " -->"; close_ = "<!-- /bench:" name " -->" }
    function emit() { print open; while ((getline l < body) > 0) print l; print close_; done = 1 }
    $0 == open { emit(); skip = 1; next }
    $0 == close_ { skip = 0; next }
    !skip { print }
    END { if (!done) { if (NR > 0) print ""; emit() } }
  ' "$results" >"$tmp"
  mv "$tmp" "$results"
}
