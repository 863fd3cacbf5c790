#!/usr/bin/env bash
# make-certs.sh DIR - writes a throw-away TLS fixture for tests into DIR
# (created if missing), with the openssl command line.  EC P-256 keys,
# valid for 3 days, keys 0600:
#
#   ca.pem, ca.key           a private CA
#   server.pem, server.key   signed by ca.pem, for DNS:localhost,
#                            IP:127.0.0.1 and IP:::1
#   other-ca.pem             a second, unrelated CA (its key is not kept)
#   wrong.pem, wrong.key     a server certificate for the same names, signed
#                            by other-ca.pem: a client trusting only ca.pem
#                            refuses it
#
# Prints nothing unless something fails (then openssl's own message and a
# non-zero exit).  Takes well under a second.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$1
days=3

command -v openssl >/dev/null || {
  echo "make-certs.sh: the openssl command is missing (apt-get install openssl)" >&2
  exit 1
}
mkdir -p "$dir"
work=$(mktemp -d "$dir/.make-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Runs openssl quietly; shows what it said only when it fails.
ossl() {
  local said
  if ! said=$(openssl "$@" 2>&1); then
    printf 'make-certs.sh: openssl %s failed:\n%s\n' "$1" "$said" >&2
    exit 1
  fi
}

# Our own configuration, so the system's openssl.cnf adds nothing.
cat >"$work/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

# new_ca NAME CN: a self-signed CA, NAME.pem and NAME.key in $work.
new_ca() {
  local serial
  serial=$(openssl rand -hex 16)
  (umask 077 && ossl req -config "$work/openssl.cnf" -x509 -newkey ec \
    -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/$1.key" \
    -out "$work/$1.pem" -days "$days" -subj "/O=master-log-spool tests/CN=$2" \
    -extensions ca_ext -set_serial "0x$serial")
}

# new_server NAME CA: a server key and certificate signed by CA, in $work.
new_server() {
  local serial
  serial=$(openssl rand -hex 16)
  (umask 077 && ossl req -config "$work/openssl.cnf" -new -newkey ec \
    -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/$1.key" \
    -out "$work/$1.csr" -subj "/O=master-log-spool tests/CN=localhost")
  ossl x509 -req -in "$work/$1.csr" -CA "$work/$2.pem" -CAkey "$work/$2.key" \
    -days "$days" -extfile "$work/openssl.cnf" -extensions server_ext \
    -set_serial "0x$serial" -out "$work/$1.pem"
}

new_ca ca "master-log-spool test CA"
new_server server ca
new_ca other-ca "master-log-spool other test CA"
new_server wrong other-ca

# Check the fixture does what the tests rely on before handing it out.
ossl verify -CAfile "$work/ca.pem" -purpose sslserver "$work/server.pem"
ossl verify -CAfile "$work/other-ca.pem" -purpose sslserver "$work/wrong.pem"
if openssl verify -CAfile "$work/ca.pem" "$work/wrong.pem" >/dev/null 2>&1; then
  echo "make-certs.sh: wrong.pem verifies against ca.pem" >&2
  exit 1
fi

chmod 0600 "$work"/*.key
chmod 0644 "$work"/*.pem
for f in ca.pem ca.key server.pem server.key other-ca.pem wrong.pem wrong.key; do
  mv -f "$work/$f" "$dir/$f"
done
