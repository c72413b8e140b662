#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by tests/slurm/start_cluster.sh.
# Best effort: always exits 0. Configs, munge key and the accounting database are kept.
set -uo pipefail

stop() {  # stop <process name> ...: SIGTERM, wait up to 15 s, then SIGKILL
    local name
    for name in "$@"; do
        pgrep -x "$name" >/dev/null 2>&1 || continue
        echo "[stop_cluster] stopping $name" >&2
        pkill -TERM -x "$name" 2>/dev/null || true
        for _ in $(seq 1 30); do pgrep -x "$name" >/dev/null 2>&1 || break; sleep 0.5; done
        pkill -KILL -x "$name" 2>/dev/null || true
    done
}

stop slurmd slurmctld slurmdbd
stop munged
stop mysqld_safe mariadbd-safe mariadbd mysqld
exit 0
