#!/usr/bin/env bash
# Makes a throw-away certificate authority and certificates to try GoKV's TLS with, into DIR:
#
#   scripts/gen-test-certs.sh DIR [USER]
#
#   ca.crt, ca.key                 a test CA (pass ca.crt as --tls-ca-cert-file)
#   server.crt, server.key         the server's, for 127.0.0.1 and localhost, signed by the CA
#                                  (--tls-cert-file, --tls-key-file); also a client's, for a
#                                  replica's link with --tls-replication yes
#   client.crt, client.key         a client's, subject CN = USER (default: admin), signed by the
#                                  CA: with --tls-cert-user yes it logs in as USER
#   client-expired.crt/.key        the same CN, signed by the CA, but expired yesterday
#   client-wrong-ca.crt/.key       the same CN, signed by another CA (wrong-ca.crt) the server
#                                  does not trust
#
# Keys are ECDSA P-256 (fast handshakes; every TLS client speaks it). Certificates last 30
# days: they are for trying things out and for tests, never for production. Needs the openssl
# command-line tool. Then, for example:
#
#   gokv-server --tls-port 7380 --tls-cert-file DIR/server.crt --tls-key-file DIR/server.key \
#       --tls-ca-cert-file DIR/ca.crt
#   redis-cli -p 7380 --tls --cacert DIR/ca.crt --cert DIR/client.crt --key DIR/client.key
set -euo pipefail
dir=${1:?usage: gen-test-certs.sh DIR [USER]}
user=${2:-admin}
command -v openssl >/dev/null || { echo "gen-test-certs.sh needs the openssl command" >&2; exit 2; }
mkdir -p "$dir"
cd "$dir"
days=30

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME SUBJECT CA EXTENSIONS DAYS: NAME.key and NAME.crt, signed by CA.crt/CA.key.
sign() {
    local name=$1 subject=$2 ca=$3 ext=$4 valid=$5
    key "$name.key"
    openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr" 2>/dev/null
    printf '%b\n' "$ext" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
        -days "$valid" -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

ca() {
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "$2" -days "$days" -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$1.crt" 2>/dev/null
}

client_ext='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth'
ca ca "/O=GoKV test/CN=GoKV test CA"
ca wrong-ca "/O=Someone else/CN=Untrusted CA"
sign server "/O=GoKV test/CN=localhost" ca \
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost' "$days"
sign client "/O=GoKV test/CN=$user" ca "$client_ext" "$days"
# -days -1: valid until yesterday, so expired from the start.
sign client-expired "/O=GoKV test/CN=$user" ca "$client_ext" -1
sign client-wrong-ca "/O=GoKV test/CN=$user" wrong-ca "$client_ext" "$days"
rm -f ./*.srl
chmod 600 ./*.key
echo "test CA and certificates (client CN '$user') written to $dir"
