#!/usr/bin/env bash
# One entry point for a fresh machine: sets up .venv and runs the demo, the tests or the checks.
#   ./dev.sh demo    set up, then run an example experiment and verify its log (SQLite, offline)
#   ./dev.sh test    set up, then ruff, mypy and the whole test suite (PostgreSQL and
#                    Chromium browser tests included)
set -euo pipefail
cd "$(dirname "$0")"
VENV="${AGENTLEDGER_VENV:-.venv}"

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.agentledger-installed"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "Installing agentledger and its dependencies into $VENV ..." >&2
        if ! { "$VENV/bin/python" -m pip install --quiet --upgrade pip \
               && "$VENV/bin/python" -m pip install --quiet -e '.[dev,postgres]'; } >"$VENV/install.log" 2>&1; then
            cat "$VENV/install.log" >&2
            exit 1
        fi
        echo "$want" > "$stamp"
    fi
    # An editable install leaves byte-compiling to the first import, which some machines
    # turn off (PYTHONDONTWRITEBYTECODE): every command would then compile the whole
    # package again on start. Compile it here, as pip does for a regular install (quick
    # when nothing changed).
    "$VENV/bin/python" -m compileall -q -j 0 agentledger >/dev/null
}

postgres_binaries() {
    # PostgreSQL tests need initdb/pg_ctl; install the server package when apt can.
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
}

chromium_binary() {
    # Browser tests drive the system's Chromium through Playwright (which never downloads a
    # browser of its own here); install Debian's package when apt can.
    if [ -x /usr/bin/chromium ]; then
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
}

case "${1:-}" in
    demo)
        # The main job: a FluxLoop-style example experiment on the embedded SQLite store,
        # offline, no API key; then its summary and an integrity check from the log.
        setup
        rm -rf .demo
        "$VENV/bin/agentledger" init .demo --template experiment
        (cd .demo && "../$VENV/bin/agentledger" run experiment --yes)
        (cd .demo && "../$VENV/bin/agentledger" experiments list)
        (cd .demo && "../$VENV/bin/agentledger" verify)
        ;;
    test)
        setup
        postgres_binaries
        chromium_binary
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        "$VENV/bin/mypy"
        shift
        "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        echo "usage: ./dev.sh demo|test" >&2
        exit 2
        ;;
esac
