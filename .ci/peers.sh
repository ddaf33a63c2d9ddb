#!/usr/bin/env bash
# Installs the real test peers into target/peers, at the versions pinned in .ci/peers/:
#   target/peers/venv  the FHIR R4 server sekmet-fhir (PyPI), run as target/peers/venv/bin/sekmet
#   target/peers/node  oauth2-mock-server and oidc-provider (npm), used by host/tests/peers/oauth-server.mjs
#                      and host/tests/peers/oidc-server.mjs
# Idempotent: a peer already installed from the same pinned list is left alone. Prints one line.
set -euo pipefail
cd "$(dirname "$0")/.."

pins=.ci/peers
peers=target/peers
venv=$peers/venv
node_dir=$peers/node
installed=()

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# --- sekmet-fhir in a virtualenv -------------------------------------------------------------
if [ -x "$venv/bin/python" ] && cmp -s "$pins/requirements.txt" "$venv/pinned-requirements.txt" \
  && "$venv/bin/python" -c 'import sekmet' 2>/dev/null; then
  :
else
  rm -rf "$venv"
  mkdir -p "$peers"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$pins/requirements.txt"
  cp "$pins/requirements.txt" "$venv/pinned-requirements.txt"
  installed+=("sekmet-fhir")
fi

# --- oauth2-mock-server and oidc-provider ---------------------------------------------------
command -v npm >/dev/null || apt_install nodejs npm
if cmp -s "$pins/package-lock.json" "$node_dir/package-lock.json" \
  && [ -f "$node_dir/node_modules/oauth2-mock-server/package.json" ] \
  && [ -f "$node_dir/node_modules/oidc-provider/package.json" ]; then
  :
else
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$pins/package.json" "$pins/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  installed+=("oauth2-mock-server" "oidc-provider")
fi

sekmet_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("sekmet-fhir"))')
mock_version=$(node -p "require('./$node_dir/node_modules/oauth2-mock-server/package.json').version")
oidc_version=$(node -p "require('./$node_dir/node_modules/oidc-provider/package.json').version")
status="already installed"
[ ${#installed[@]} -gt 0 ] && status="installed now: ${installed[*]}"
echo "peers: sekmet-fhir $sekmet_version, oauth2-mock-server $mock_version, oidc-provider $oidc_version in $peers ($status)"
