#!/usr/bin/env bash
# Discovery of Designated Resolvers (RFC 9462) pointing at embargo itself: with --listen-tls,
# _dns.resolver.arpa SVCB names embargo's DoT listeners (priority, TargetName, alpn, port,
# ipv4hint) after the certificate's first DNS name or --resolver-name, and _dns.NAME SVCB is
# answered too, never forwarded; a client that verifies (kdig with the test CA) reaches the
# designated name over DoT; a certificate without a DNS name gives TargetName "."; SIGHUP with a
# renewed certificate of another name changes the records; without encrypted listeners the
# answer stays NODATA. Real redis-server, tests/integration/fakedns.py, kdig, and openssl for a
# throwaway CA and server certificates made in $WORK.
# The checks are independent: each starts what it uses (ONLY= runs any of them alone).
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all
command -v openssl >/dev/null 2>&1 || skip_script "openssl not found (apt-get install -y openssl)"

# A throwaway CA, and server certificates signed by it (tests/integration/lib.sh).
test_ca "$WORK"
test_cert "$WORK" server "DNS:dns.test,DNS:alt.test,IP:127.0.0.1"
test_cert "$WORK" nameless "IP:127.0.0.1"
test_cert "$WORK" renewed "DNS:new.test,IP:127.0.0.1"

REDIS=$(free_port)
start_redis "$REDIS"
RURL="redis://127.0.0.1:$REDIS"
consent_first --redis "$RURL"
F=$(free_port)
start_fake up "$F"

# svcb PORT NAME [KDIG ARGS...]: the SVCB answer to NAME, whole (kdig's text).
svcb() {
	local port=$1 name=$2
	shift 2
	q "$port" @127.0.0.1 "$name" SVCB "$@"
}

# records OUT: OUT's SVCB records, one a line: "PRIORITY TARGET PARAMS" after the owner and TTL.
records() {
	awk '$1 !~ /^;/ && $4 == "SVCB" { $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print }' <<<"$1"
}

# The certificate's first DNS name is the TargetName; one record for the one DoT listener:
# alpn dot, its port, its address as the hint. A client that verifies the designation reaches
# that name over DoT with the CA (RFC 9462 section 4.2: the name and the IP address in the SAN).
from_certificate() {
	local p t out
	p=$(free_port)
	t=$(free_port)
	start_embargo cert "$p" --upstream "127.0.0.1:$F" --redis "$RURL" \
		--listen-tls "127.0.0.1:$t" --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key"
	out=$(svcb "$p" _dns.resolver.arpa)
	echo "$out"
	grep -q "status: NOERROR" <<<"$out" && grep -q "Flags: qr aa rd ra;" <<<"$out" &&
		grep -q "ANSWER: 1;" <<<"$out" &&
		grep -qE "^_dns\.resolver\.arpa\.\s+300\s+IN\s+SVCB\s" <<<"$out" &&
		[ "$(records "$out")" = "1 dns.test. alpn=dot port=$t ipv4hint=127.0.0.1" ] || return 1
	# Other types at the name stay NODATA, with the zone's SOA.
	out=$(q "$p" @127.0.0.1 _dns.resolver.arpa AAAA)
	echo "$out"
	grep -q "status: NOERROR" <<<"$out" && grep -q "ANSWER: 0;" <<<"$out" &&
		grep -qE "^resolver\.arpa\.\s.*SOA" <<<"$out" || return 1
	# Without --resolver-name, _dns.dns.test is the upstream's: the fake forwards nothing but
	# A, and logs what it was asked.
	q "$p" @127.0.0.1 _dns.dns.test SVCB >/dev/null
	grep -qi "_dns.dns.test" "$WORK/up.queries" || { echo "_dns.dns.test was not forwarded"; return 1; }
	out=$(kdig -p "$t" +timeout=3 +retry=0 @127.0.0.1 +tls-ca="$WORK/ca.pem" +tls-hostname=dns.test \
		_dns.resolver.arpa SVCB 2>&1)
	echo "$out"
	grep -q "status: NOERROR" <<<"$out" && grep -q "^;; TLS session" <<<"$out" &&
		grep -q "alpn=dot port=$t" <<<"$out"
}
check "_dns.resolver.arpa SVCB names the DoT listener after the certificate's DNS name" from_certificate

# --resolver-name wins over the certificate; _dns.NAME SVCB answers the same records, locally
# (the fake upstream never sees it), other types there NODATA; two listeners, two priorities.
resolver_name() {
	local p t1 t2 out want
	p=$(free_port)
	t1=$(free_port)
	t2=$(free_port)
	start_embargo named "$p" --upstream "127.0.0.1:$F" --redis "$RURL" \
		--listen-tls "127.0.0.1:$t1" --listen-tls "127.0.0.2:$t2" \
		--tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" --resolver-name alt.test
	want=$(printf '1 alt.test. alpn=dot port=%s ipv4hint=127.0.0.1\n2 alt.test. alpn=dot port=%s ipv4hint=127.0.0.2' "$t1" "$t2")
	out=$(svcb "$p" _dns.resolver.arpa)
	echo "$out"
	[ "$(records "$out")" = "$want" ] || return 1
	out=$(svcb "$p" _dns.alt.test)
	echo "$out"
	grep -q "status: NOERROR" <<<"$out" && grep -q "Flags: qr aa rd ra;" <<<"$out" &&
		grep -qE "^_dns\.alt\.test\.\s+300\s+IN\s+SVCB\s" <<<"$out" &&
		[ "$(records "$out")" = "$want" ] || return 1
	out=$(q "$p" @127.0.0.1 _dns.alt.test TXT)
	echo "$out"
	grep -q "status: NOERROR" <<<"$out" && grep -q "ANSWER: 0;" <<<"$out" || return 1
	! grep -qi "_dns.alt.test" "$WORK/up.queries" || { echo "_dns.alt.test went upstream"; return 1; }
	# A name the certificate does not cover would be said in the log; this one it covers.
	! grep -q "not valid for" "$WORK/named.log"
}
check "--resolver-name: the TargetName, and _dns.NAME SVCB answered locally" resolver_name

# A certificate with no DNS name: TargetName "." (the owner name), and the log says at start that
# clients cannot verify the designation.
no_name() {
	local p t out
	p=$(free_port)
	t=$(free_port)
	start_embargo nameless "$p" --upstream "127.0.0.1:$F" --redis "$RURL" \
		--listen-tls "127.0.0.1:$t" --tls-cert "$WORK/nameless.pem" --tls-key "$WORK/nameless.key"
	out=$(svcb "$p" _dns.resolver.arpa)
	echo "$out"
	[ "$(records "$out")" = "1 . alpn=dot port=$t ipv4hint=127.0.0.1" ] || return 1
	grep "DDR" "$WORK/nameless.log"
	[ "$(grep -c 'clients cannot verify the designation' "$WORK/nameless.log")" -eq 1 ]
}
check "a certificate without a DNS name: TargetName \".\", said once in the log" no_name

# SIGHUP reads the certificate again: a renewal with another name changes the TargetName.
renewed() {
	local p t out pid
	p=$(free_port)
	t=$(free_port)
	cp "$WORK/server.pem" "$WORK/live.pem"
	cp "$WORK/server.key" "$WORK/live.key"
	start_embargo renew "$p" --upstream "127.0.0.1:$F" --redis "$RURL" \
		--listen-tls "127.0.0.1:$t" --tls-cert "$WORK/live.pem" --tls-key "$WORK/live.key"
	out=$(svcb "$p" _dns.resolver.arpa)
	[ "$(records "$out")" = "1 dns.test. alpn=dot port=$t ipv4hint=127.0.0.1" ] || { echo "$out"; return 1; }
	cp "$WORK/renewed.pem" "$WORK/live.pem"
	cp "$WORK/renewed.key" "$WORK/live.key"
	pid=$PID_renew
	kill -HUP "$pid"
	wait_for 10 eval "kdig -p $p +timeout=1 +retry=0 @127.0.0.1 _dns.resolver.arpa SVCB +short | grep -q ' new.test\. '" ||
		{ echo "no new.test after SIGHUP:"; svcb "$p" _dns.resolver.arpa; tail -n 5 "$WORK/renew.log"; return 1; }
	out=$(svcb "$p" _dns.resolver.arpa)
	echo "$out"
	[ "$(records "$out")" = "1 new.test. alpn=dot port=$t ipv4hint=127.0.0.1" ]
}
check "SIGHUP with a renewed certificate of another name: the TargetName follows it" renewed

# Without --listen-tls nothing changes: NODATA with resolver.arpa's SOA, --resolver-name or not.
without_tls() {
	local p out
	p=$(free_port)
	start_embargo plain "$p" --upstream "127.0.0.1:$F" --redis "$RURL" --resolver-name alt.test
	out=$(svcb "$p" _dns.resolver.arpa +edns)
	echo "$out"
	grep -q "status: NOERROR" <<<"$out" && grep -q "ANSWER: 0;" <<<"$out" &&
		grep -qE "^resolver\.arpa\.\s.*SOA" <<<"$out" && ! grep -q "DDR" "$WORK/plain.log"
}
check "without --listen-tls, _dns.resolver.arpa SVCB stays NODATA" without_tls

finish
