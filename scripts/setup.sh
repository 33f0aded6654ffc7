# shellcheck shell=bash
# Shared set-up for scripts/test and scripts/demo; sourced, not run.
#
# On source: checks the Debian packages (installs the missing ones when root), creates .venv with
# python3 >= 3.11 and installs the project into it (again only when pyproject.toml changed).
# Then the caller runs `ensure_engine` to get a Docker Engine into DOCKER_HOST.

XTM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
XTM_VENV="$XTM_ROOT/.venv"

_xtm_log() { printf 'setup: %s\n' "$*" >&2; }

_xtm_is_root() { [[ "$(id -u)" -eq 0 ]]; }

# A busybox that runs in an empty rootfs: images are built from it (src/xtm_composer/images.py).
_xtm_static_busybox() {
    local bb out
    bb="$(command -v busybox 2>/dev/null)" || return 1
    # ldd is part of libc-bin (always there); it says so when a binary needs no loader, and then
    # exits non-zero, hence the capture instead of a pipe under pipefail.
    out="$(LC_ALL=C ldd "$bb" 2>&1 || true)"
    [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]]
}

_xtm_python_ok() {
    "${PYTHON:-python3}" - <<'EOF' >/dev/null 2>&1
import sys
import ensurepip, venv  # Debian splits these into python3-venv
sys.exit(sys.version_info < (3, 11))
EOF
}

# Missing Debian packages. Required ones block everything; engine ones only matter when this
# script has to start its own engine, so a non-root user with a working Docker is not blocked.
_xtm_required_missing() {
    local missing=()
    _xtm_static_busybox || missing+=(busybox-static)
    if ! command -v "${PYTHON:-python3}" >/dev/null 2>&1; then
        missing+=(python3 python3-venv)
    elif ! _xtm_python_ok; then
        missing+=(python3-venv)
    fi
    echo "${missing[*]}"
}

_xtm_engine_missing() {
    local missing=()
    { command -v dockerd && command -v docker; } >/dev/null 2>&1 || missing+=(docker.io)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    echo "${missing[*]}"
}

# Needed by tests only: SoftHSM2, the real PKCS#11 token of tests/hsm. Installed with the others when
# root; never blocking (without it those tests skip, or fail under XTM_REQUIRE_ENGINE=1).
_xtm_test_missing() {
    local missing=()
    command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
    echo "${missing[*]}"
}

_xtm_packages() {
    local required engine tests all
    required="$(_xtm_required_missing)"
    engine="$(_xtm_engine_missing)"
    tests="$(_xtm_test_missing)"
    all="$(echo "$required $engine $tests" | xargs)"
    [[ -z "$all" ]] && return 0
    if _xtm_is_root && command -v apt-get >/dev/null 2>&1; then
        _xtm_log "installing Debian packages: $all"
        # shellcheck disable=SC2086 # word splitting of the package list is wanted
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $all >/dev/null
        return
    fi
    if [[ -n "$required" ]]; then
        _xtm_log "missing Debian packages: $required"
        _xtm_log "install them as root: apt-get install --no-install-recommends $required"
        exit 1
    fi
}

_xtm_venv() {
    local stamp="$XTM_VENV/.xtm-installed" want
    if ! _xtm_python_ok; then
        _xtm_log "python3 >= 3.11 with the venv module is required (found: $("${PYTHON:-python3}" --version 2>&1))"
        exit 1
    fi
    if [[ ! -d "$XTM_VENV" ]]; then
        _xtm_log "creating .venv"
        "${PYTHON:-python3}" -m venv "$XTM_VENV"
    elif ! "$XTM_VENV/bin/python" -c '' 2>/dev/null; then
        # Its interpreter was removed or is out of reach: say so rather than delete a directory on a guess.
        _xtm_log ".venv/bin/python does not run (as $(id -un)); remove .venv to have it recreated"
        exit 1
    fi
    # The install is editable, so only a change to pyproject.toml (deps, entry points) needs pip.
    want="$(sha256sum "$XTM_ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [[ "$(cat "$stamp" 2>/dev/null || true)" == "$want" ]]; then
        return 0
    fi
    _xtm_log "installing the project into .venv (pip install -e '.[test]')"
    "$XTM_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input -e "${XTM_ROOT}[test]"
    echo "$want" >"$stamp"
}

# True if a Docker Engine answers at the given DOCKER_HOST, asked the way the tests will ask.
_xtm_engine_answers() {
    DOCKER_HOST="$1" timeout 15 "$XTM_VENV/bin/python" -c \
        'import docker; docker.from_env(timeout=5).ping()' >/dev/null 2>&1
}

_xtm_stop_engine() {
    local rc=$?
    trap - EXIT INT TERM
    "$XTM_ROOT/scripts/engine.sh" stop || _xtm_log "stopping the private engine failed"
    exit "$rc"
}

# Points DOCKER_HOST at a Docker Engine that answers, in this order:
#   1. $DOCKER_HOST as given,
#   2. the system engine at /var/run/docker.sock,
#   3. this checkout's private engine if already running (left running afterwards),
#   4. a private engine started now with scripts/engine.sh (root only), stopped when the caller exits.
ensure_engine() {
    local private_env
    if [[ -n "${DOCKER_HOST:-}" ]]; then
        if _xtm_engine_answers "$DOCKER_HOST"; then
            _xtm_log "using the engine at DOCKER_HOST=$DOCKER_HOST"
            return 0
        fi
        _xtm_log "no engine answers at DOCKER_HOST=$DOCKER_HOST; looking elsewhere"
    fi
    if [[ -S /var/run/docker.sock ]] && _xtm_engine_answers unix:///var/run/docker.sock; then
        export DOCKER_HOST=unix:///var/run/docker.sock
        _xtm_log "using the system engine at $DOCKER_HOST"
        return 0
    fi
    if private_env="$("$XTM_ROOT/scripts/engine.sh" status 2>/dev/null)"; then
        eval "$private_env"
        _xtm_log "using the already running private engine ($DOCKER_HOST)"
        return 0
    fi
    if ! _xtm_is_root; then
        _xtm_log "no Docker Engine answers (DOCKER_HOST unset or dead, nothing at /var/run/docker.sock)."
        _xtm_log "Either start Docker and make its socket usable by $(id -un) (or set DOCKER_HOST),"
        _xtm_log "or run this as root: it then starts a private engine (needs docker.io, iproute2)."
        exit 1
    fi
    local missing
    missing="$(_xtm_engine_missing)"
    if [[ -n "$missing" ]]; then
        _xtm_log "no Docker Engine answers and the private one needs: $missing"
        exit 1
    fi
    # Trap before starting: an interrupted start must be cleaned up too.
    trap _xtm_stop_engine EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    private_env="$("$XTM_ROOT/scripts/engine.sh" start)"
    eval "$private_env"
    _xtm_log "started a private engine ($DOCKER_HOST); it stops when this script exits"
}

_xtm_packages
_xtm_venv
