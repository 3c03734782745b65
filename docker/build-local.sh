#!/usr/bin/env bash
# Builds docker/Dockerfile with podman on a machine that reaches package indexes but no image
# registry (as root): makes a debian:bookworm-slim equivalent with debootstrap once (kept in podman's
# image store) and builds on it by its digest, as production builds on debian:bookworm-slim@sha256:...,
# lets pip in the build trust the host's CA bundle, tags the image fruit-assets:dev.
#
#   docker/build-local.sh [podman build options...]     e.g. --build-arg MODEL_WEIGHTS=random, --no-cache
#   docker/build-local.sh --base-only                   only make the base image if missing (CI does, once)
#
# Environment: FRUIT_IMAGE (tag; fruit-assets:dev), FRUIT_BASE_IMAGE (the local base;
# localhost/debian:bookworm-slim-local), DEBIAN_MIRROR (http://deb.debian.org/debian),
# HOST_CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt; "" for none), CONTAINERS_CONF (docker/podman/).
# With Docker and internet access none of this is needed: docker build -f docker/Dockerfile .
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
image=${FRUIT_IMAGE:-fruit-assets:dev}
base=${FRUIT_BASE_IMAGE:-localhost/debian:bookworm-slim-local}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca_bundle=${HOST_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/docker/podman/containers.conf}

make_base() {
  # What the official debian:bookworm-slim holds: a minbase system, deb822 sources with updates
  # and security, documentation excluded from dpkg, no apt caches or lists.

  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' RETURN
  echo "making the base image $base (debootstrap --variant=minbase bookworm; once per machine)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log"; return 1; }
  rm -f "$rootfs.log" "$rootfs/etc/apt/sources.list"
  cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - "$base" > /dev/null
}

podman image exists "$base" || make_base
if [ "${1:-}" = "--base-only" ]; then exit 0; fi

# By digest: the build uses the very image inspected here, even if the tag is re-pointed meanwhile.
base_digest=$(podman image inspect --format '{{.Digest}}' "$base")
build_args=(--build-arg "BASE_IMAGE=${base%@*}@$base_digest")
if [ -n "$ca_bundle" ]; then
  build_args+=(--volume "$ca_bundle:/tmp/host-ca.crt:ro" --build-arg PIP_CERT=/tmp/host-ca.crt)
fi
started=$(date +%s)
podman build --file "$repo/docker/Dockerfile" --tag "$image" "${build_args[@]}" "$@" "$repo"
echo "built $image in $(( $(date +%s) - started )) s: $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1 / 1e9}')"
