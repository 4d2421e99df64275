# Shared by diff.sh and dnssec.sh (sourced after lib.sh): sign signed.example at test time and
# serve it with diff.example from one NSD. Needs ldns-keygen and ldns-signzone (ldnsutils).

SIGNED_DIR="$WORK/zones"

# need_signing: the signing tools, Unbound, and Debian's python3 with dnspython (as PY; the
# python3 first in PATH may be another without it).
need_signing() {
	need ldns-keygen ldnsutils
	need ldns-signzone ldnsutils
	need unbound unbound
	PY=/usr/bin/python3
	"$PY" -c "import dns.message" 2>/dev/null ||
		die "$PY cannot import dns (apt-get install -y python3-dnspython)"
}

# sign_zone: a KSK and a ZSK (ECDSA P-256, algorithm 13), signed.example signed with NSEC into
# $SIGNED_DIR/signed.zone, then bogus.signed.example's address changed under its signature.
# Sets SIGNED_DS (the KSK's DS record, a trust anchor) and SIGNED_DNSKEY (the KSK).
sign_zone() {
	mkdir -p "$SIGNED_DIR"
	cp "$srcdir/tests/integration/zone.signed" "$SIGNED_DIR/signed.unsigned"
	local ksk zsk
	ksk=$(cd "$SIGNED_DIR" && ldns-keygen -a ECDSAP256SHA256 -k signed.example) ||
		die "ldns-keygen failed"
	zsk=$(cd "$SIGNED_DIR" && ldns-keygen -a ECDSAP256SHA256 signed.example) ||
		die "ldns-keygen failed"
	(cd "$SIGNED_DIR" && ldns-signzone -f signed.zone signed.unsigned "$zsk" "$ksk") ||
		die "ldns-signzone failed"
	sed -i -E 's/^(bogus\.signed\.example\.[[:space:]].*[[:space:]]A[[:space:]]+)192\.0\.2\.99$/\1192.0.2.98/' \
		"$SIGNED_DIR/signed.zone"
	grep -qE "^bogus\.signed\.example\..*192\.0\.2\.98$" "$SIGNED_DIR/signed.zone" ||
		die "could not break bogus.signed.example's signature"
	SIGNED_DS=$(cat "$SIGNED_DIR/$ksk.ds")
	SIGNED_DNSKEY=$(cat "$SIGNED_DIR/$ksk.key")
}

# start_zones_nsd PORT: NSD serving diff.example and the signed signed.example (sign_zone first).
start_zones_nsd() {
	mkdir -p "$WORK/nsd"
	cp "$srcdir/tests/integration/zone.diff" "$WORK/nsd/diff.zone"
	cp "$SIGNED_DIR/signed.zone" "$WORK/nsd/signed.zone"
	start_nsd_zones "$1" www.signed.example diff.example.:diff.zone signed.example.:signed.zone
}

# start_unbound NAME PORT EXTRA-CONFIG: Unbound in the foreground, config and log in $WORK/NAME.*;
# EXTRA-CONFIG is appended to the config verbatim (module-config, forward zones, anchors).
start_unbound() {
	local name=$1 port=$2 extra=$3
	mkdir -p "$WORK/$name"
	cat >"$WORK/$name.conf" <<CONF
server:
	interface: 127.0.0.1@$port
	port: $port
	do-daemonize: no
	username: ""
	chroot: ""
	directory: "$WORK/$name"
	pidfile: ""
	use-syslog: no
	logfile: "$WORK/$name.log"
	verbosity: 1
	num-threads: 1
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	do-ip6: no
$extra
remote-control:
	control-enable: no
CONF
	unbound-checkconf "$WORK/$name.conf" >"$WORK/$name.checkconf" 2>&1 ||
		die "unbound config: $(cat "$WORK/$name.checkconf")"
	unbound -d -c "$WORK/$name.conf" >>"$WORK/$name.out" 2>&1 &
	PIDS+=($!)
	wait_for 10 eval "kdig @127.0.0.1 -p $port +timeout=1 +retry=0 www.signed.example A | grep -q 'status: NOERROR'" ||
		die "unbound $name on port $port did not start: $(cat "$WORK/$name.log" "$WORK/$name.out" 2>/dev/null)"
}
