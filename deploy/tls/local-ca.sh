#!/usr/bin/env sh
# A local certificate authority and one server certificate signed by it, for trying the
# deployment on one machine (compose, the nginx test). Never for production: there the
# certificate comes from the state's PKI or ACME.
#
#   deploy/tls/local-ca.sh OUT_DIR [NAME ...]
#
# Writes OUT_DIR/ca.pem (import it into the browser or pass it to clients), ca.key,
# server.pem (the chain: server then CA) and server.key. NAMEs become the certificate's
# subject alternative names (default: localhost 127.0.0.1). Existing files are kept, so that
# running it again does not invalidate a CA already imported.
set -eu
out=${1:?usage: local-ca.sh OUT_DIR [NAME ...]}
shift
[ "$#" -gt 0 ] || set -- localhost 127.0.0.1
mkdir -p "$out"
cd "$out"
if [ -s server.pem ] && [ -s server.key ] && [ -s ca.pem ]; then
    echo "local-ca: $out has a certificate already; kept"
    exit 0
fi
umask 077
san=""
for name in "$@"; do
    case "$name" in
        *[!0-9.]*) san="${san:+$san,}DNS:$name" ;;
        *) san="${san:+$san,}IP:$name" ;;
    esac
done
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 825 \
    -subj "/CN=servicekonto local CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
    -subj "/CN=$1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 397 -sha256 \
    -extfile server.ext -out server.crt 2>/dev/null
cat server.crt ca.pem > server.pem
rm -f server.csr server.ext server.crt ca.srl
# Certificates are public; the key stays readable by its owner only (nginx reads it as root).
chmod 644 ca.pem server.pem
echo "local-ca: wrote $out/ca.pem and a certificate for $*"
