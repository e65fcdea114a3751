#!/bin/sh
# Everything the tests need that cargo does not fetch, installed on a fresh machine.
#
# - Debian packages: the IPFIX peers the interoperability tests run against (softflowd, pmacct's
#   pmacctd, python3-ipfix for Debian's /usr/bin/python3, tshark, openssl for the TLS tests),
#   and iproute2's `ip` for the tests that make network namespaces and veth pairs.
# - PyPI packages: DuckDB (with its httpfs extension) and pyarrow for the archive-reader tests
#   (tests/readers).
# - crates.io: s3s-fs, an S3 server for the object-storage tests.
#
# Idempotent: packages already present are not fetched again.
set -eu
cd "$(dirname "$0")/.."

missing=""
for package in softflowd pmacct python3-ipfix tshark openssl iproute2; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $package"
done
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null
fi

python3 -m pip install -q -r tests/readers/requirements.txt

# s3s-fs, the S3 server (SigV4 over a directory) the object-storage tests run against
# (tests/it/object_store.rs): built once by cargo install (about 6 minutes on two cores) into
# cargo's bin directory, and kept there. Later versions need a newer rustc.
s3s_fs="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
if ! "$s3s_fs" --version 2>/dev/null | grep -q "0\.14\.1"; then
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi
