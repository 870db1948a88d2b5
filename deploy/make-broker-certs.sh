#!/usr/bin/env bash
# Create the TLS material for the goldenhour Mosquitto broker with openssl:
# a private CA, a server certificate for the broker and, optionally, client
# certificates (for `require_certificate true`).
#
# Usage:
#   deploy/make-broker-certs.sh OUT_DIR [BROKER_HOSTNAME] [CLIENT_NAME ...]
#
#   OUT_DIR          folder for the files (created if missing)
#   BROKER_HOSTNAME  the name clients use to reach the broker (default: the
#                    machine's hostname); the server certificate is valid for
#                    it, for localhost and for 127.0.0.1
#   CLIENT_NAME      zero or more client names (an ambulance id, a hospital id,
#                    hub-<hub_id>); each gets client-<name>.crt/.key with the
#                    name as its common name
#
# Writes: ca.crt ca.key server.crt server.key [client-<name>.crt client-<name>.key]
#
# Idempotent: files that exist are kept (a run with new client names only adds
# those); delete a file to make it again. A server certificate that does not
# cover BROKER_HOSTNAME is made again. Keys are mode 600; give the broker's
# user read access to server.key (e.g. chgrp mosquitto server.key; chmod 640).
# Environment: DAYS (validity, default 825), CA_DAYS (default 3650),
# CA_NAME (default "goldenhour broker CA").
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi

out=$1
host=${2:-$(hostname -f 2>/dev/null || hostname)}
shift $(( $# >= 2 ? 2 : 1 ))
days=${DAYS:-825}
ca_days=${CA_DAYS:-3650}
ca_name=${CA_NAME:-goldenhour broker CA}
name_re='^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'

mkdir -p "$out"
cd "$out"
umask 077

if [[ ! -s ca.key || ! -s ca.crt ]]; then
    openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days "$ca_days" \
        -keyout ca.key -out ca.crt -subj "/CN=$ca_name" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 644 ca.crt
    echo "created CA: $out/ca.crt"
fi

# sign NAME EXT_FILE: issue NAME.crt for NAME.key (made if missing) with the CA.
sign() {
    local name=$1 cn=$2 ext=$3
    [[ -s "$name.key" ]] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$name.key" 2>/dev/null
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -days "$days" -sha256 -extfile "$ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$ext"
    chmod 644 "$name.crt"
    echo "created $out/$name.crt (CN=$cn)"
}

is_ip=false
[[ "$host" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || "$host" == *:* ]] && is_ip=true
san="DNS:localhost,IP:127.0.0.1"
if $is_ip; then
    [[ "$host" == "127.0.0.1" ]] || san="$san,IP:$host"
elif [[ "$host" != "localhost" ]]; then
    san="$san,DNS:$host"
fi
if [[ -s server.crt ]]; then
    if $is_ip; then check=(-checkip "$host"); else check=(-checkhost "$host"); fi
    verdict=$(openssl x509 -in server.crt -noout "${check[@]}" 2>&1 || true)
    if [[ "$verdict" != *"does match"* ]]; then
        echo "server.crt does not cover $host: making it again"
        rm -f server.crt
    fi
fi
if [[ ! -s server.crt ]]; then
    ext=$(mktemp)
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=$san" >"$ext"
    sign server "$host" "$ext"
fi

for client in "$@"; do
    if [[ ! "$client" =~ $name_re ]]; then
        echo "invalid client name: $client (letters, digits, _ . -; at most 64)" >&2
        exit 2
    fi
    [[ -s "client-$client.crt" ]] && continue
    ext=$(mktemp)
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" >"$ext"
    sign "client-$client" "$client" "$ext"
done
