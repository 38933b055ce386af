#!/usr/bin/env bash
# Makes a test CA and certificates for ParaGAN's services with openssl:
#   deploy/tls/make_certs.sh OUT_DIR [HOST ...]
# writes OUT_DIR/ca.pem (the roots both ends trust) and ca.key (kept so more
# certificates can be signed: guard it or delete it), server.pem/server.key
# (every service's certificate, with each HOST as a subjectAltName; default
# localhost 127.0.0.1 ::1) and client.pem/client.key (every client's, for
# mutual TLS). Keys are ECDSA P-256, mode 0600; certificates are valid for a
# year. Servers: --tls_cert_file=server.pem --tls_key_file=server.key
# [--tls_ca_file=ca.pem: mutual TLS]. Clients: --tls_ca_file=ca.pem
# [--tls_cert_file=client.pem --tls_key_file=client.key].
# In Kubernetes, e.g.: kubectl create secret generic paragan-tls
#   --from-file=OUT_DIR/ca.pem --from-file=OUT_DIR/server.pem ...
# For a test set only: a production cluster's CA (cert-manager, ...) should
# issue these.
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -ge 1 ] && exit 0 || exit 2
fi
command -v openssl > /dev/null || { echo "make_certs.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }
OUT=$1; shift
HOSTS=("$@")
[ ${#HOSTS[@]} -gt 0 ] || HOSTS=(localhost 127.0.0.1 ::1)
SAN=""
for h in "${HOSTS[@]}"; do
  if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then SAN+="${SAN:+,}IP:$h"; else SAN+="${SAN:+,}DNS:$h"; fi
done
mkdir -p "$OUT"
chmod 700 "$OUT"
umask 077
DAYS=365
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2> /dev/null; }

key "$OUT/ca.key"
openssl req -x509 -new -key "$OUT/ca.key" -sha256 -days $DAYS -subj "/CN=ParaGAN test CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$OUT/ca.pem"

# leaf NAME CN EXTENSIONS
leaf() {
  key "$OUT/$1.key"
  openssl req -new -key "$OUT/$1.key" -subj "/CN=$2" -out "$OUT/$1.csr"
  openssl x509 -req -in "$OUT/$1.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" \
    -CAcreateserial -CAserial "$OUT/ca.srl" -days $DAYS -sha256 \
    -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "$3") -out "$OUT/$1.pem" 2> /dev/null
  rm -f "$OUT/$1.csr"
}
leaf server "${HOSTS[0]}" "extendedKeyUsage=serverAuth
subjectAltName=$SAN"
leaf client "ParaGAN client" "extendedKeyUsage=clientAuth"
rm -f "$OUT/ca.srl"
chmod 644 "$OUT/ca.pem" "$OUT/server.pem" "$OUT/client.pem"
openssl verify -CAfile "$OUT/ca.pem" "$OUT/server.pem" "$OUT/client.pem" > /dev/null
echo "make_certs.sh: $OUT/{ca,server,client}.pem and keys; server names: $SAN"
