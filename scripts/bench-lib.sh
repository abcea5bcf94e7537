# shellcheck shell=bash
# shellcheck disable=SC2154 # bench_name is the sourcing script's
# What scripts/bench and scripts/bench-budget share: a private run directory, the processes they
# start (every one stopped on exit, and nothing else), readiness waits, fresh keys and the
# readings of /proc. Sourced from the repository's root after setting `bench_name` (the prefix
# of every message: `bench`, `bench-budget`).

# bench_begin: makes the run directory ($run_dir) and arms the trap that, on any exit, stops every
# process whose pid was added to $pids, shows the last log lines of a failed run and removes the
# directory.
bench_begin() {
  run_dir=$(mktemp -d -t "snykapps-$bench_name.XXXXXX")
  pids=()
  trap bench_stop EXIT INT TERM
}

bench_stop() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "$bench_name: failed (exit $status); last log lines:" >&2
    for log in "$run_dir"/*.log; do
      [ -s "$log" ] || continue
      echo "--- $(basename "$log")" >&2
      tail -n 5 "$log" >&2
    done
  fi
  rm -rf "$run_dir"
  exit "$status"
}

# Waits until "$@" succeeds (a healthcheck), or fails after 10 s; $1 names what we wait for.
wait_for() {
  local what=$1; shift
  for _ in $(seq 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$bench_name: $what did not become ready" >&2
  return 1
}

# random_key BYTES: that many random bytes, base64url (a caller key, a cookie key).
random_key() { head -c "$1" /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_'; }
vmhwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
vmrss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# The machine, as the reports state it: "2 cores (CPU model), 23.4 GiB RAM, Linux 6.1.0".
machine_line() {
  local cpu_model ram
  cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  ram=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "$(nproc) cores ($cpu_model), $ram RAM, Linux $(uname -r)"
}

# The commit measured, "(with uncommitted changes)" when the tree differs from it.
commit_line() {
  local commit
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git status --porcelain 2>/dev/null)" ]; then commit="$commit (with uncommitted changes)"; fi
  echo "$commit"
}
