#!/usr/bin/env bash
# Yahoo blocks clients by their TLS fingerprint, and clients on OpenSSL/native-tls were blocked
# where rustls got through: no crate of the workspace may pull native-tls or OpenSSL in.
# `cargo tree -i` of each such crate must find nothing (it exits non-zero when a crate is not in
# the dependency graph at all, which is what we want).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in native-tls openssl openssl-sys hyper-tls tokio-native-tls; do
  if tree=$(cargo tree --workspace --locked --edges normal,build -i "$crate" 2>/dev/null); then
    echo "check-tls: $crate is in the dependency graph (HTTP clients must use rustls only):" >&2
    echo "$tree" | head -20 >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "check-tls: ok, rustls only (no native-tls or OpenSSL in the dependency graph)"
exit "$status"
