#!/usr/bin/env bash
# (hpcsweep: a copy of the stop-local-slurm.sh script our studio ships in shared/tools/local-slurm; `make slurm-down` runs it.)
# stop.sh - stop the daemons that start.sh started,
# found through its pid files only (never by process name): slurmd, slurmctld,
# slurmdbd and MariaDB (if LOCAL_SLURM_ACCOUNTING=1 was used), and munged only
# if start.sh started it. Jobs still queued or running are cancelled
# first unless LOCAL_SLURM_KEEP_JOBS=1. Safe to run twice.
set -uo pipefail

BASE="${LOCAL_SLURM_DIR:-/tmp/local-slurm}"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
log() { echo "[stop-local-slurm] $*" >&2; }

pid_alive() {  # pid_alive PIDFILE COMM-PREFIX
    local pid
    [ -s "$1" ] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    case "$pid" in ''|*[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/comm" ] || return 1
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in "$2"*) return 0 ;; *) return 1 ;; esac
}

stop_pidfile() {  # stop_pidfile PIDFILE COMM-PREFIX
    local pid
    if pid_alive "$1" "$2"; then
        pid="$(cat "$1")"
        log "stopping $2 (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
        if [ -d "/proc/$pid" ]; then
            log "$2 (pid $pid) still alive after 20 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    elif [ -e "$1" ]; then
        log "$2: stale pid file $1 removed"
    else
        log "$2: not running (no pid file)"
    fi
    rm -f "$1"
}

if [ "${LOCAL_SLURM_KEEP_JOBS:-0}" != 1 ] && pid_alive "$BASE/run/slurmctld.pid" slurmctld \
        && command -v squeue >/dev/null 2>&1; then
    jobs="$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 1 60); do
            [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5
        done
    fi
fi

stop_pidfile "$BASE/run/slurmd.pid" slurmd
stop_pidfile "$BASE/run/slurmctld.pid" slurmctld
if [ -e "$BASE/run/slurmdbd.pid" ]; then stop_pidfile "$BASE/run/slurmdbd.pid" slurmdbd; fi
if [ -e "$BASE/db/mysqld.pid" ]; then
    if pid_alive "$BASE/db/mysqld.pid" mysqld; then stop_pidfile "$BASE/db/mysqld.pid" mysqld
    else stop_pidfile "$BASE/db/mysqld.pid" mariadbd; fi
fi
if [ -e "$BASE/run/munged.pid" ]; then
    stop_pidfile "$BASE/run/munged.pid" munged
else
    log "munged: not started by start.sh, left alone"
fi
log "done"
