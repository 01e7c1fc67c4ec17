#!/usr/bin/env bash
# Azurite, Microsoft's Azure Storage emulator (npm package `azurite`), for
# the object tier's Azure tests: its Blob service on 127.0.0.1 only, data
# in a directory of its own, and a watcher that stops it when the test
# process exits, however it exits.
#
#   .ci/azurite.sh install                  npm-install Azurite if missing
#   .ci/azurite.sh start DIR PORT [OWNER_PID]
#   .ci/azurite.sh stop DIR
#
# Installed under $TIERSEED_AZURITE_HOME (default ~/.cache/tierseed-azurite),
# pinned, with @azure/storage-blob, which creates the test container.
set -euo pipefail

HOME_DIR="${TIERSEED_AZURITE_HOME:-$HOME/.cache/tierseed-azurite}"
AZURITE_VERSION=3.35.0
BLOB_SDK_VERSION=12.32.0
CONTAINER=tierseed-test
# Azurite's well-known development account (public, in Microsoft's docs).
ACCOUNT=devstoreaccount1
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

installed() {
  [ -x "$HOME_DIR/node_modules/.bin/azurite-blob" ] && [ -d "$HOME_DIR/node_modules/@azure/storage-blob" ] &&
    grep -q "\"version\": \"$AZURITE_VERSION\"" "$HOME_DIR/node_modules/azurite/package.json"
}

install() {
  installed && return 0
  command -v npm >/dev/null || { echo "npm is missing: apt-get install -y nodejs npm" >&2; exit 1; }
  mkdir -p "$HOME_DIR"
  npm install --prefix "$HOME_DIR" --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION" "@azure/storage-blob@$BLOB_SDK_VERSION" >/dev/null
  installed || { echo "Azurite did not install under $HOME_DIR" >&2; exit 1; }
}

start() {
  local dir=$1 port=$2 owner=${3:-}
  installed || { echo "Azurite is not installed: bash .ci/azurite.sh install" >&2; exit 1; }
  mkdir -p "$dir/data"
  # --loose and --skipApiVersionCheck: the Rust client speaks a newer API
  # version than some Azurite releases know; telemetry would try the network.
  setsid "$HOME_DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
    --location "$dir/data" --silent --loose --skipApiVersionCheck --disableTelemetry \
    >"$dir/azurite.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  echo "$port" >"$dir/port"
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { cat "$dir/azurite.log" >&2; exit 1; }
    sleep 0.1
  done
  NODE_PATH="$HOME_DIR/node_modules" node -e '
    const { BlobServiceClient, StorageSharedKeyCredential } = require("@azure/storage-blob");
    const [url, account, key, container] = process.argv.slice(1);
    new BlobServiceClient(url, new StorageSharedKeyCredential(account, key))
      .getContainerClient(container).createIfNotExists()
      .catch((e) => { console.error("creating the container: " + e.message); process.exit(1); });
  ' "http://127.0.0.1:$port/$ACCOUNT" "$ACCOUNT" "$KEY" "$CONTAINER" || { stop "$dir"; exit 1; }
  if [ -n "$owner" ]; then
    setsid nohup bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; bash "$2" stop "$3"; rm -rf "$3"' \
      watcher "$owner" "$0" "$dir" >/dev/null 2>&1 &
  fi
  echo "AZURE_STORAGE_ENDPOINT=http://127.0.0.1:$port/$ACCOUNT"
  echo "AZURE_STORAGE_ACCOUNT_NAME=$ACCOUNT"
  echo "AZURE_STORAGE_ACCOUNT_KEY=$KEY"
}

stop() {
  local dir=$1
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
}

case "${1:-}" in
  install) install ;;
  start) start "$2" "${3:-10000}" "${4:-}" ;;
  stop) stop "$2" ;;
  *) echo "usage: $0 install | start DIR [PORT] [OWNER_PID] | stop DIR" >&2; exit 2 ;;
esac
