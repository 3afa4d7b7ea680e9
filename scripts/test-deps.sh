#!/bin/sh
# Install the real peers used by the tests (Debian packages), when missing and when we
# can: as root with apt-get. Otherwise say what is missing; tests that need a peer skip
# with a message naming it.
set -e
need=""
command -v postconf >/dev/null 2>&1 || need="$need postfix"
[ -x /usr/sbin/smtp-sink ] || need="$need postfix"
[ -x /usr/sbin/smtp-source ] || need="$need postfix"
# tests/tls_e2e.rs cross-checks with posttls-finger (Debian: in the postfix package).
[ -x /usr/sbin/posttls-finger ] || need="$need postfix"
command -v swaks >/dev/null 2>&1 || need="$need swaks"
command -v msmtp >/dev/null 2>&1 || need="$need msmtp"
[ -x /usr/lib/dovecot/lmtp ] || need="$need dovecot-lmtpd"
# SASL tests: dovecot's auth service behind Postfix's smtpd, and the Cyrus SASL client
# plugins Postfix's own smtp needs for PLAIN, LOGIN and CRAM-MD5 (daemon differential).
[ -x /usr/sbin/dovecot ] || need="$need dovecot-core"
ls /usr/lib/*/sasl2/libplain.so >/dev/null 2>&1 || need="$need libsasl2-modules"
command -v postmap >/dev/null 2>&1 || need="$need postfix"
[ -x /usr/sbin/dnsmasq ] || need="$need dnsmasq-base"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v script >/dev/null 2>&1 || need="$need bsdutils"
[ -f /usr/lib/postfix/postfix-pcre.so ] || need="$need postfix-pcre"
[ -f /usr/lib/postfix/postfix-lmdb.so ] || need="$need postfix-lmdb"
[ -f /usr/lib/postfix/postfix-cdb.so ] || need="$need postfix-cdb"
# Building: hash:/btree: tables link the system Berkeley DB (feature bdb); pcre2-sys uses
# the system PCRE2 when its headers are there (it builds its bundled copy otherwise).
[ -f /usr/include/db.h ] || need="$need libdb-dev"
[ -f /usr/include/pcre2.h ] || need="$need libpcre2-dev"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
[ -f /usr/include/openssl/ssl.h ] || need="$need libssl-dev"
need=$(echo $need | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ -z "$(echo $need | tr -d ' ')" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: installing:$need"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q $need >/dev/null
else
    echo "test-deps: missing:$need (run as root to install; dependent tests will skip)" >&2
fi
