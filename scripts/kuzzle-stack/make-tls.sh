#!/usr/bin/env bash
# A local CA and one server certificate for the stack's TLS proxy (openssl).
#
#   make-tls.sh DIR          make DIR/ca.pem, DIR/server.pem, DIR/server-key.pem
#   make-tls.sh --check DIR  exit 0 when DIR holds a set made by this version
#                            of the script, valid for 30 more days
#
# Keys are ECDSA P-256: on a gateway behind a slow, metered link, a full
# handshake then carries a ~0.5 KB certificate and a 64-byte-ish signature
# instead of ~0.9 KB and 256 bytes with RSA-2048, and the proxy signs each
# full handshake ~10x faster. (An RSA signature is cheaper to verify, but a
# P-256 verify is well under a millisecond on the gateway's side.)
#
# The server certificate names only `DNS:localhost`: no IP address. A client
# that connects to https://localhost:PORT verifies; one that connects to
# https://127.0.0.1:PORT (same listener, same certificate) must refuse it,
# which is the "wrong hostname" case a test can use without any extra
# address or name resolution.
#
# The CA's private key is deleted once the server certificate is signed: this
# CA can never sign anything else, so trusting ca.pem trusts this one server
# certificate only.
set -euo pipefail

# Bumped whenever what is made here changes, so that installs remake it.
VERSION="kuzzle-stack-tls 1 ecdsa-p256 san=DNS:localhost"
CHECK_SECONDS=$((30 * 86400))

check() { # dir
  local dir=$1 f
  for f in ca.pem server.pem server-key.pem .version; do
    [[ -s $dir/$f ]] || return 1
  done
  [[ $(cat -- "$dir/.version") == "$VERSION" ]] || return 1
  openssl x509 -noout -checkend "$CHECK_SECONDS" -in "$dir/server.pem" >/dev/null 2>&1 || return 1
  openssl x509 -noout -checkend "$CHECK_SECONDS" -in "$dir/ca.pem" >/dev/null 2>&1 || return 1
  openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1
}

if [[ ${1:-} == --check ]]; then
  [[ $# -eq 2 ]] || { echo "usage: $0 --check DIR" >&2; exit 2; }
  check "$2"
  exit
fi
[[ $# -eq 1 ]] || { echo "usage: $0 DIR | --check DIR" >&2; exit 2; }
command -v openssl >/dev/null 2>&1 || { echo "make-tls.sh: openssl is not installed" >&2; exit 1; }

dir=$1
mkdir -p -- "$dir"
cd -- "$dir"
umask 077
rm -f -- ca.pem ca-key.pem server.pem server-key.pem server.csr server.ext .version

# A positive 127-bit serial (RFC 5280 asks for unique, positive, <= 20 bytes).
serial() { printf '0x%s' "$(openssl rand -hex 16 | sed 's/^./7/')"; }

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca-key.pem 2>/dev/null
openssl req -x509 -new -key ca-key.pem -sha256 -days 3650 -set_serial "$(serial)" \
  -subj "/O=libkuzzle local stack/CN=libkuzzle local test CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -out ca.pem

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server-key.pem 2>/dev/null
openssl req -new -key server-key.pem -subj "/O=libkuzzle local stack/CN=localhost" -out server.csr
cat >server.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -set_serial "$(serial)" \
  -days 825 -sha256 -extfile server.ext -out server.pem 2>/dev/null

rm -f -- ca-key.pem server.csr server.ext
chmod 644 ca.pem server.pem
chmod 600 server-key.pem
printf '%s\n' "$VERSION" >.version
check . || { echo "make-tls.sh: the certificates just made do not verify" >&2; exit 1; }
