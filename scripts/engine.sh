#!/usr/bin/env bash
# Private Docker Engine for tests and the demo.
#
#   scripts/engine.sh start    start it (idempotent); prints `export DOCKER_HOST=...` for eval
#   scripts/engine.sh stop     stop it and clean up what a crash may have left (idempotent)
#   scripts/engine.sh status   exit 0 when it answers, 3 when it does not
#
# dockerd runs in its own network namespace (entered with nsenter: `ip netns exec` breaks dockerd's
# cgroup detection) so its bridge, iptables rules and swarm networks never touch the host network.
# Socket, data and exec roots live under <repo>/.engine, or $XTM_ENGINE_DIR. Needs root.
# All human-readable messages go to stderr: stdout of `start` is meant for eval.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${XTM_ENGINE_DIR:-$ROOT/.engine}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

SOCK="$DIR/docker.sock"
DATA="$DIR/data"
EXEC="$DIR/exec"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
# Remembers a storage driver that had to be chosen over overlay2, so later starts skip the failing try.
DRIVER_FILE="$DIR/storage-driver"
# One namespace per engine directory: two checkouts can each run their own engine side by side.
NS="xtm-engine-$(printf '%s' "$DIR" | sha256sum | cut -c1-10)"
START_TIMEOUT="${XTM_ENGINE_START_TIMEOUT:-30}"
STOP_TIMEOUT="${XTM_ENGINE_STOP_TIMEOUT:-40}"

log() { printf 'engine: %s\n' "$*" >&2; }

# The CLI talks only to our socket, whatever context or TLS settings the caller's shell carries.
dk() {
    env -u DOCKER_CONTEXT -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH \
        timeout 10 docker --host "unix://$SOCK" "$@"
}

answers() {
    [[ -S "$SOCK" ]] && dk version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# A zombie still has a /proc entry and accepts `kill -0`, but it is gone for our purposes
# (its parent, the shell that started it, has usually exited and init reaps lazily).
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

# Pid of our dockerd if the pid file names a live dockerd; a recycled pid must not be signalled.
daemon_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == dockerd ]] || return 1
    alive "$pid" || return 1
    printf '%s\n' "$pid"
}

need_root() {
    if [[ "$(id -u)" -ne 0 ]]; then
        log "must run as root (dockerd, network namespaces and mounts need it)"
        exit 1
    fi
}

print_env() { printf 'export DOCKER_HOST=unix://%s\n' "$SOCK"; }

# Pids of processes whose command line mentions our exec root: containerd and its shims.
# Read from /proc because procps may not be installed.
engine_helpers() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline" || true)"
        case "$cmd" in
            *containerd*"$EXEC/"*) printf '%s\n' "${p#/proc/}" ;;
        esac
    done
}

children_of() {
    local parent="$1" p stat ppid
    for p in /proc/[0-9]*; do
        stat="$(cat "$p/stat" 2>/dev/null)" || continue
        # Field 4 is the parent pid; the command name (field 2) may contain spaces, so cut after ')'.
        read -r _ ppid _ <<<"${stat##*) }"
        [[ "$ppid" == "$parent" ]] && printf '%s\n' "${p#/proc/}"
    done
    return 0
}

kill_leftovers() {
    local pid child
    for pid in $(engine_helpers); do
        # A shim's children are container init processes; killing a pid-namespace init kills the
        # whole container, which a killed shim alone would leave running.
        for child in $(children_of "$pid"); do
            kill -KILL "$child" 2>/dev/null || true
        done
        log "killing leftover $(cat "/proc/$pid/comm" 2>/dev/null || echo process) (pid $pid)"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# Mount points under the engine directory, deepest first (overlay merged dirs, netns bind mounts,
# the data root's own bind mount). The `-l` detach works even if something still holds them.
unmount_leftovers() {
    local mp
    awk -v dir="$DIR/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo |
        awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- | uniq |
        while IFS= read -r mp; do
            umount -l "$mp" 2>/dev/null || true
        done
}

delete_netns() {
    if [[ -e "/run/netns/$NS" ]]; then
        ip netns delete "$NS" 2>/dev/null || true
    fi
}

cleanup() {
    kill_leftovers
    unmount_leftovers
    delete_netns
    rm -f "$PIDFILE" "$SOCK"
}

# Launch dockerd with one storage driver; 0 when its socket answers in time.
launch() {
    local driver="$1" pid waited=0 step=0.1 max
    max=$((START_TIMEOUT * 10))
    rm -f "$PIDFILE" "$SOCK"
    printf '\n=== %s start with %s\n' "$(date -u +%FT%TZ)" "$driver" >>"$LOG"
    # setsid: a Ctrl-C aimed at the calling script must not reach dockerd, whose stop is the trap's job;
    # -w keeps $! alive as long as dockerd even if setsid has to fork.
    # fd 9 (the start lock) is closed so the daemon does not hold it for its whole life.
    setsid -w nsenter --net="/run/netns/$NS" \
        env DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 \
        dockerd --host="unix://$SOCK" --data-root="$DATA" --exec-root="$EXEC" \
        --pidfile="$PIDFILE" --storage-driver="$driver" \
        </dev/null >>"$LOG" 2>&1 9>&- &
    pid=$!
    while ((waited < max)); do
        if answers; then
            return 0
        fi
        if ! alive "$pid"; then
            log "dockerd ($driver) exited during start-up"
            return 1
        fi
        sleep "$step"
        waited=$((waited + 1))
    done
    log "dockerd ($driver) did not answer within ${START_TIMEOUT}s"
    kill -TERM "$pid" 2>/dev/null || true
    sleep 2
    kill -KILL "$pid" 2>/dev/null || true
    return 1
}

start() {
    need_root
    local missing=()
    for cmd in dockerd docker ip nsenter setsid; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    if ((${#missing[@]})); then
        log "missing commands: ${missing[*]} (Debian: apt-get install docker.io iproute2 util-linux)"
        exit 1
    fi
    # Unix socket paths are capped at 108 bytes; containerd's socket is the longest one we create.
    if ((${#EXEC} + 40 > 107)); then
        log "engine directory path too long for unix sockets: $DIR (set XTM_ENGINE_DIR to a shorter one)"
        exit 1
    fi

    exec 9>"$DIR/lock"
    flock 9

    if daemon_pid >/dev/null; then
        # Running: it may still be starting (another caller), so give it the usual start-up time.
        local i
        for ((i = 0; i < START_TIMEOUT * 10; i++)); do
            if answers; then
                log "already running (pid $(daemon_pid))"
                print_env
                return 0
            fi
            sleep 0.1
        done
        log "dockerd pid $(daemon_pid) runs but does not answer on $SOCK; run '$0 stop' first"
        exit 1
    fi

    # Nothing running: whatever a crashed run left behind would make dockerd fail or leak.
    cleanup
    mkdir -p "$DATA" "$EXEC"
    # Keep the previous run's log for post-mortems, but no more.
    [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
    ip netns add "$NS"
    ip -n "$NS" link set lo up

    local driver t0
    t0="$(date +%s.%N)"
    driver="$(cat "$DRIVER_FILE" 2>/dev/null || echo overlay2)"
    if ! launch "$driver"; then
        if [[ "$driver" == overlay2 ]]; then
            log "overlay2 failed, falling back to vfs (slower, uses more disk)"
            tail -n 5 "$LOG" >&2 || true
            kill_leftovers
            unmount_leftovers
            driver=vfs
            if launch vfs; then
                echo vfs >"$DRIVER_FILE"
            else
                driver=""
            fi
        else
            driver=""
        fi
    fi
    if [[ -z "$driver" ]]; then
        log "dockerd failed to start; last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
        cleanup
        exit 1
    fi
    log "dockerd up (pid $(daemon_pid), $driver) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
    print_env
}

stop() {
    need_root
    exec 9>"$DIR/lock"
    flock 9
    local pid
    if pid="$(daemon_pid)"; then
        # Leaving the swarm first removes its networks and tasks cleanly instead of on next start.
        if [[ "$(dk info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true)" == active ]]; then
            dk swarm leave --force >/dev/null 2>&1 || true
        fi
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "dockerd did not stop within ${STOP_TIMEOUT}s, killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
        log "stopped dockerd (pid $pid)"
    else
        log "not running"
    fi
    cleanup
}

status() {
    local pid
    if pid="$(daemon_pid)" && answers; then
        log "running (pid $pid)"
        print_env
        return 0
    fi
    log "not running"
    return 3
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
