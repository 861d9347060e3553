#!/usr/bin/env bash
# Makes the container base image locally, for machines that reach no image registry:
# Debian 12 (bookworm), variant minbase, with Debian's python3 (3.11), python3-venv,
# ca-certificates and netbase, built with debootstrap from a Debian mirror and imported
# into podman's (root) image store. Run as root. Idempotent: when the image is already
# there it changes nothing, reaches no mirror and returns in well under a second.
#
#   scripts/build-base-image.sh [IMAGE]     (IMAGE defaults to localhost/hotline-probe-base:bookworm)
#
# Then build the product image on it (docs/container.md):
#   buildah build --pull=never --format docker --isolation chroot \
#       --build-arg BASE_IMAGE=localhost/hotline-probe-base:bookworm -t hotline-probe .
#
# The mirror: $DEBIAN_MIRROR if set, else the bookworm mirror in this machine's apt
# sources (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list), else deb.debian.org.
# netbase (/etc/services, /etc/protocols) is added because the official python:*-slim
# images have it, and getaddrinfo()/getservbyname() with a service name need it; tzdata
# (zoneinfo: a config's time zones) and passwd (useradd) are in minbase already.
# To rebuild (a newer point release, security updates): podman rmi IMAGE, then run again.
set -euo pipefail

image=${1:-localhost/hotline-probe-base:bookworm}
suite=bookworm
packages=python3,python3-venv,ca-certificates,netbase

say() { printf 'build-base-image: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

for tool in podman debootstrap; do
    command -v "$tool" >/dev/null \
        || die "$tool is missing: install Debian's podman and debootstrap (scripts/install-test-deps.sh)"
done

if podman image exists "$image"; then
    say "$image already exists (podman rmi $image to rebuild it)"
    exit 0
fi
((EUID == 0)) || die "run as root: debootstrap needs it, and the image goes to root's image store"

apt_mirror() {  # the first URI that serves the bookworm suite in this machine's apt sources
    local file
    for file in /etc/apt/sources.list.d/*.sources; do
        [[ -r $file ]] || continue
        # deb822 stanzas: a URIs: line and a Suites: line naming the suite itself.
        awk -v suite="$suite" '
            /^[ \t]*$/ { if (uri != "" && found) { print uri; exit } uri = ""; found = 0; next }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) found = 1 }
            END { if (uri != "" && found) print uri }
        ' "$file" | head -n 1
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $file ]] || continue
        awk -v suite="$suite" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2; exit }' "$file"
    done
}
mirror=${DEBIAN_MIRROR:-$(apt_mirror | grep -m 1 -v -- '-security' || true)}
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d /var/tmp/hotline-probe-base.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
rootfs=$work/rootfs

say "debootstrap $suite (minbase + ${packages//,/ }) from $mirror"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed (whole log above, last lines)"
}

# What an image needs no copy of: package lists and archives (the image is rebuilt, not
# upgraded in place), logs, debootstrap's own leftovers, and, as Debian's slim images do,
# documentation and translations (the copyright files stay); a dpkg rule keeps those of
# packages installed later out too.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/* "$rootfs"/debootstrap \
    "$rootfs"/tmp/* "$rootfs"/var/tmp/*
find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/hotline-probe-slim" <<'RULES'
# From scripts/build-base-image.sh: no documentation or translations in the image.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
RULES
# The build's resolver and hostname come from the container engine.
: > "$rootfs/etc/hostname"
: > "$rootfs/etc/resolv.conf"

created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
version=$(cat "$rootfs/etc/debian_version")
say "importing Debian $version as $image"
tar -C "$rootfs" --numeric-owner --xattrs -cf - . \
    | podman import --quiet \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.opencontainers.image.base.name=debian:$suite" \
        --change "LABEL org.opencontainers.image.created=$created" \
        --change "LABEL org.opencontainers.image.version=$version" \
        --change 'LABEL org.opencontainers.image.description=Debian minbase with python3, made by scripts/build-base-image.sh' \
        --message "debootstrap --variant=minbase --include=$packages $suite $mirror" \
        - "$image" > /dev/null
say "made $image"
