#!/usr/bin/env bash
# End-to-end tests: real redis-server and NSD on free loopback ports, embargo between them, and
# kdig as the client. Prints TAP lines and a closing "N passed, N failed, N skipped".
# The checks share one daemon (main) and one Redis, and run in order: invalid_member reads what
# main logged at its first load, port_in_use needs main still listening, clean_stop stops it, and
# the checks after clean_stop start instances of their own. ONLY= one of the later checks alone
# is fine; ONLY=clean_stop's or port_in_use's words alone are too, but not after reordering.
set -u
srcdir=${srcdir:-.}
EMBARGO=${EMBARGO:-./resolver/embargo}
POLICY_TOOL=${POLICY_TOOL:-$(dirname "$EMBARGO")/../tool/embargo-policy}
. "$srcdir/tests/integration/lib.sh"

need_all

REDIS=$(free_port)
NSD=$(free_port)
EP=$(free_port)
start_redis "$REDIS"
start_nsd "$NSD"
R() { redis-cli -p "$REDIS" "$@" >/dev/null; }

# The policy under test: the bundled list plus test rules.
R del embargo:deny embargo:allow embargo:reason
R sadd embargo:deny kaspersky.com blocked.test noreason.test "bad name.test" ""
R sadd embargo:allow support.blocked.test
R hset embargo:reason kaspersky.com "US Commerce Final Determination 2024-06-20" \
	blocked.test "test rule: blocked"
# This policy drops most of the bundled list a fresh instance starts with: the operator's
# consent lets it replace the bundled list.
consent_first --redis "redis://127.0.0.1:$REDIS"
start_embargo main "$EP" --listen "[::1]:$EP" --upstream "127.0.0.1:$NSD" \
	--redis "redis://127.0.0.1:$REDIS" --reload-interval 1
wait_for 5 grep -q "policy loaded from redis" "$WORK/main.log" || die "policy not loaded"

# expect_deny PORT NAME EXTRA-TEXT [KDIG ARGS...]
expect_deny() {
	local port=$1 name=$2 text=$3
	shift 3
	local out
	out=$(q "$port" @127.0.0.1 "$name" +edns "$@")
	grep -q "status: NXDOMAIN" <<<"$out" || { echo "not NXDOMAIN: $out"; return 1; }
	grep -qF "EDE: 16 (Censored): '$text'" <<<"$out" || { echo "no EDE '$text': $out"; return 1; }
	grep -qE "IN[[:space:]]+SOA[[:space:]]+embargo.invalid." <<<"$out" || { echo "no SOA: $out"; return 1; }
	grep -q "Flags: qr rd ra" <<<"$out" || { echo "flags: $out"; return 1; }
}

# expect_answer PORT NAME ADDRESS [KDIG ARGS...]
expect_answer() {
	local port=$1 name=$2 addr=$3
	shift 3
	local out
	out=$(q "$port" @127.0.0.1 "$name" "$@")
	grep -q "status: NOERROR" <<<"$out" || { echo "not NOERROR: $out"; return 1; }
	grep -qF "$addr" <<<"$out" || { echo "no $addr: $out"; return 1; }
}

raw() { # PORT HEX: send a raw UDP packet, print the answer's hex or "none"
	python3 - "$@" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
s.sendto(bytes.fromhex(sys.argv[2]), ("127.0.0.1", int(sys.argv[1])))
try:
    print(s.recv(4096).hex())
except socket.timeout:
    print("none")
PY
}

REASON="US Commerce Final Determination 2024-06-20"
check "listed domain is denied with NXDOMAIN, SOA and EDE reason" \
	expect_deny "$EP" kaspersky.com "$REASON"
check "names below a listed domain are denied" \
	expect_deny "$EP" dl.updates.kaspersky.com "$REASON"
check "look-alike notkaspersky.com resolves" expect_answer "$EP" notkaspersky.com 192.0.2.10
check "kaspersky.com.example.org resolves" expect_answer "$EP" kaspersky.com.example.org 192.0.2.11
check "unlisted name resolves through the upstream" expect_answer "$EP" www.test 192.0.2.1
check "AAAA resolves" expect_answer "$EP" www.test 2001:db8::1 AAAA
check "allow exception lets its subtree through" \
	expect_answer "$EP" deep.support.blocked.test 192.0.2.78
check "deny around the exception still holds" expect_deny "$EP" www.blocked.test "test rule: blocked"
check "rule without a reason names the rule" \
	expect_deny "$EP" noreason.test "denied by policy: noreason.test"

upper_case() {
	expect_deny "$EP" WWW.KasPersky.COM. "$REASON" || return 1
	# kdig prints names lower-cased, so check the echoed question on the wire.
	local qhex="beef01000001000000000000035757570"
	qhex+="94b6173506572736b79" # 9 KasPersky
	qhex+="03434f4d00"         # 3 COM 0
	qhex+="00010001"
	local out
	out=$(raw "$EP" "$qhex")
	[ "${out:0:4}" = beef ] || { echo "no answer: $out"; return 1; }
	[ "${out:24:${#qhex}-24}" = "${qhex:24}" ] || { echo "question changed: $out"; return 1; }
	[ $((0x${out:6:2} & 15)) -eq 3 ] || { echo "not NXDOMAIN: $out"; return 1; }
}
check "upper case and trailing dot are denied, question case echoed" upper_case

no_edns() {
	local out
	out=$(q "$EP" @127.0.0.1 www.kaspersky.com +noedns)
	grep -q "status: NXDOMAIN" <<<"$out" || { echo "$out"; return 1; }
	! grep -q "EDNS PSEUDOSECTION" <<<"$out" || { echo "OPT without EDNS query: $out"; return 1; }
}
check "a client without EDNS gets no OPT record" no_edns

ipv6() {
	local out
	out=$(q "$EP" @::1 www.kaspersky.com +edns)
	grep -q "status: NXDOMAIN" <<<"$out" && grep -q "EDE: 16" <<<"$out" || { echo "$out"; return 1; }
	q "$EP" @::1 www.test | grep -q 192.0.2.1
}
check "IPv6 listener denies and resolves" ipv6

tcp() {
	expect_deny "$EP" www.kaspersky.com "$REASON" +tcp || return 1
	expect_answer "$EP" www.test 192.0.2.1 +tcp
}
check "TCP denies and resolves" tcp

big_tcp() {
	local out
	out=$(q "$EP" @127.0.0.1 big.test TXT +tcp +noedns)
	[ "$(grep -c '^big.test.*TXT' <<<"$out")" -eq 7 ] || { echo "$out"; return 1; }
	out=$(q "$EP" @127.0.0.1 big.test TXT +notcp +noedns +ignore)
	grep -qE "Flags: qr.* tc" <<<"$out" || { echo "UDP answer not truncated: $out"; return 1; }
}
check "an answer too big for UDP is truncated there and whole over TCP" big_tcp

pipelined() {
	# 100 queries in one TCP write, more than the 64 a connection may have in flight: every one
	# is answered, in any order (RFC 7766).
	python3 - "$EP" <<'PY'
import socket, struct, sys
def query(i):
    name = b"".join(bytes([len(l)]) + l for l in [b"p%d" % i, b"test"]) + b"\0"
    msg = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
    return struct.pack(">H", len(msg)) + msg
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"".join(query(i) for i in range(100)))
buf, ids = b"", set()
while len(ids) < 100:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
        n = struct.unpack(">H", buf[:2])[0]
        msg, buf = buf[2:2 + n], buf[2 + n:]
        ids.add(struct.unpack(">H", msg[:2])[0])
        assert msg[3] & 15 == 3, "expected NXDOMAIN from the upstream"
print(len(ids))
sys.exit(0 if ids == set(range(100)) else 1)
PY
}
check "100 pipelined TCP queries all answered" pipelined

udp_burst() {
	# 300 UDP queries sent without waiting, so the daemon reads them in recvmmsg batches and
	# looks their names up together: denied, resolved and malformed ones interleaved, each
	# answered as it would be alone. Every name is in NSD's zones: a denied one would get
	# NOERROR with its address from the upstream, so only embargo's policy answers NXDOMAIN with
	# its SOA (embargo.invalid) and EDE 16; a resolved one must come with its address.
	python3 - "$EP" <<'PY'
import re, socket, struct, sys
def name(text):
    return b"".join(bytes([len(l)]) + l for l in text.encode().split(b".")) + b"\0"
OPT = b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
DENIED = ["kaspersky.com", "www.kaspersky.com", "dl.kaspersky.com", "www.blocked.test",
          "noreason.test"]
RESOLVED = [("www.test", "192.0.2.1"), ("deep.support.blocked.test", "192.0.2.78"),
            ("notkaspersky.com", "192.0.2.10"), ("kaspersky.com.example.org", "192.0.2.11")]
want = {}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.settimeout(3)
msgs = []
for i in range(300):
    hdr = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 1)
    if i % 3 == 0:
        qname = DENIED[i // 3 % len(DENIED)]
        msgs.append(hdr + name(qname) + struct.pack(">HH", 1, 1) + OPT)
        want[i] = (3, qname, None)
    elif i % 3 == 1:
        qname, addr = RESOLVED[i // 3 % len(RESOLVED)]
        msgs.append(hdr + name(qname) + struct.pack(">HH", 1, 1) + OPT)
        want[i] = (0, qname, socket.inet_aton(addr))
    else:
        msgs.append(hdr[:-2] + b"\0\0" + b"\x05ab")  # the name runs past the end
        want[i] = (1, "malformed", None)
for m in msgs:
    s.sendto(m, ("127.0.0.1", int(sys.argv[1])))
got = {}
try:
    while len(got) < len(want):
        a = s.recv(4096)
        got[struct.unpack(">H", a[:2])[0]] = a
except socket.timeout:
    pass
def wrong(i):
    rcode, qname, addr = want[i]
    a = got.get(i)
    if a is None:
        return "no answer"
    flags, qd, an, ns, ar = struct.unpack(">HHHHH", a[2:12])
    if flags & 15 != rcode:
        return "rcode %d, want %d" % (flags & 15, rcode)
    if rcode == 3 and not (ns == 1 and b"\x07embargo\x07invalid\0" in a and
                           re.search(b"\\x00\\x0f..\\x00\\x10", a[12:], re.S)):
        return "NXDOMAIN without embargo's SOA and EDE 16 (the upstream's?)"
    if rcode == 0 and not (an >= 1 and addr in a):
        return "NOERROR without its address"
    return None
bad = [(i, want[i][1], wrong(i)) for i in want if wrong(i)]
print("%d of %d answered; %d wrong or missing" % (len(got), len(want), len(bad)))
if bad:
    print(bad[:10])
    sys.exit(1)
PY
}
check "a burst of 300 UDP queries: denied, resolved and malformed, each answered right" udp_burst

cname() {
	local out
	out=$(q "$EP" @127.0.0.1 alias.test +edns)
	grep -q "status: NXDOMAIN" <<<"$out" || { echo "$out"; return 1; }
	grep -qF "EDE: 16 (Censored): '$REASON'" <<<"$out" || { echo "$out"; return 1; }
	grep -qE "^kaspersky.com.[[:space:]].*SOA" <<<"$out" || { echo "$out"; return 1; }
	# Asked twice: the second answer comes from the cache and must be denied as well.
	out=$(q "$EP" @127.0.0.1 alias.test +edns)
	grep -q "status: NXDOMAIN" <<<"$out" || { echo "cached: $out"; return 1; }
	out=$(q "$EP" @127.0.0.1 alias2.test +edns)
	grep -q "EDE: 16 (Censored): 'test rule: blocked'" <<<"$out" || { echo "two hops: $out"; return 1; }
}
check "a CNAME into a listed domain is denied, also from cache" cname

live_change() {
	expect_answer "$EP" later.test 192.0.2.81 || return 1
	R sadd embargo:deny later.test
	wait_for 5 expect_deny "$EP" later.test "denied by policy: later.test" ||
		{ echo "SADD not enforced"; return 1; }
	R srem embargo:deny later.test
	wait_for 5 expect_answer "$EP" later.test 192.0.2.81 || { echo "SREM not enforced"; return 1; }
}
check "redis-cli SADD and SREM are enforced without restart (cached name too)" live_change

invalid_member() {
	grep -q "skipped invalid policy entry: embargo:deny member 'bad name.test'" "$WORK/main.log" ||
		{ echo "not logged"; return 1; }
	# Two invalid members ("bad name.test" and ""), counted in the policy in force.
	q "$EP" @127.0.0.1 CH TXT policy.embargo. +short | grep -q " invalid=2 " ||
		{ q "$EP" @127.0.0.1 CH TXT policy.embargo. +short; return 1; }
	[ "$(grep -c "member 'bad name.test'" "$WORK/main.log")" -eq 1 ] || { echo "logged more than once"; return 1; }
	expect_deny "$EP" www.blocked.test "test rule: blocked"
}
check "an invalid member is skipped, logged once, and costs nothing else" invalid_member

wrong_type() {
	R set embargo:allow notaset
	wait_for 5 grep -q "wrong type" "$WORK/main.log" || { echo "not logged"; return 1; }
	# The policy in force stays whole: its denials, and its allow rule too (a string read as an
	# empty set would deny the excepted subtree).
	expect_deny "$EP" www.kaspersky.com "$REASON" || return 1
	expect_answer "$EP" deep.support.blocked.test 192.0.2.78 || return 1
	R del embargo:allow
	R sadd embargo:allow support.blocked.test
}
check "a policy key of the wrong type keeps the current policy" wrong_type

malformed() {
	# Header readable, question cut short: FORMERR with the same ID.
	local out
	out=$(raw "$EP" "beef01000001000000000000036162")
	[ "${out:0:4}" = "beef" ] || { echo "answer: $out"; return 1; }
	[ $((0x${out:6:2} & 15)) -eq 1 ] || { echo "rcode not FORMERR: $out"; return 1; }
	# Shorter than a header: dropped.
	out=$(raw "$EP" "beef0100")
	[ "$out" = none ] || { echo "short packet answered: $out"; return 1; }
	# A response (QR set) is never answered.
	out=$(raw "$EP" "beef81000001000000000000037777770474657374000001000001")
	[ "$out" = none ] || { echo "response answered: $out"; return 1; }
	expect_answer "$EP" www.test 192.0.2.1
}
check "malformed queries: FORMERR or dropped, and the daemon keeps serving" malformed

# servfail PORT MIN-MS MAX-MS: www.test is answered SERVFAIL with EDE 22, between MIN-MS and
# MAX-MS after it was asked.
servfail() {
	local start ms out
	start=$(date +%s%3N)
	out=$(q "$1" @127.0.0.1 www.test +edns +timeout=$((5 * SCALE)))
	ms=$(($(date +%s%3N) - start))
	echo "SERVFAIL after $ms ms"
	grep -q "status: SERVFAIL" <<<"$out" || { echo "$out"; return 1; }
	grep -q "EDE: 22" <<<"$out" || { echo "no EDE 22: $out"; return 1; }
	[ "$ms" -ge "$2" ] && [ "$ms" -le "$3" ] || { echo "not within $2..$3 ms"; return 1; }
}
SCALE=${TIME_SCALE:-1}
# An upstream that reads every query and answers none: SERVFAIL when --timeout (1000 ms) runs
# out, not before, not long after.
SILENT=$(free_port)
start_fake silent "$SILENT" --mode silent
EP2=$(free_port)
start_embargo deadup "$EP2" --upstream "127.0.0.1:$SILENT" --redis "redis://127.0.0.1:$REDIS" \
	--timeout 1000
check "a silent upstream gives SERVFAIL when --timeout runs out, not before, not long after" \
	servfail "$EP2" 950 $((1000 + 500 * SCALE))
# A closed port: the ICMP error ends the wait early, and it is never longer than the timeout.
EP3=$(free_port)
start_embargo closedup "$EP3" --upstream "127.0.0.1:$(free_port)" --redis "redis://127.0.0.1:$REDIS" \
	--timeout 1000
check "an upstream on a closed port gives SERVFAIL within the timeout" \
	servfail "$EP3" 0 $((1000 + 500 * SCALE))

redis_down() {
	local rp ep out
	rp=$(free_port)
	ep=$(free_port)
	start_embargo noredis "$ep" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$rp" \
		--reload-interval 1
	grep -q "enforcing the bundled" "$WORK/noredis.log" || { echo "not logged"; return 1; }
	expect_deny "$ep" ksn.kaspersky-labs.com \
		"US Commerce Final Determination 2024-06-20: Kaspersky Lab software (updates, KSN telemetry)" ||
		return 1
	expect_answer "$ep" blocked.test 192.0.2.66 || return 1
	start_redis "$rp"
	redis-cli -p "$rp" sadd embargo:deny blocked.test >/dev/null
	# One name where the bundled list has 40: held until the operator consents.
	wait_for 5 eval 'q "$ep" @127.0.0.1 CH TXT policy.embargo. +short | grep -q "held=shrink"' ||
		{ echo "not held: $(cat "$WORK/noredis.log")"; return 1; }
	# Meanwhile its addition is enforced on top of the bundled list.
	expect_deny "$ep" blocked.test "denied by policy: blocked.test" || return 1
	expect_deny "$ep" ksn.kaspersky-labs.com \
		"US Commerce Final Determination 2024-06-20: Kaspersky Lab software (updates, KSN telemetry)" ||
		return 1
	consent_first --redis "redis://127.0.0.1:$rp"
	# Consented: the Redis policy alone, the bundled list lifted.
	wait_for 5 eval '! q "$ep" @127.0.0.1 ksn.kaspersky-labs.com +edns | grep -q "EDE: 16"' ||
		{ echo "redis policy not picked up: $(cat "$WORK/noredis.log")"; return 1; }
	expect_deny "$ep" blocked.test "denied by policy: blocked.test" || return 1
	! q "$ep" @127.0.0.1 CH TXT policy.embargo. +short | grep -q held || return 1
	# Redis gone again: the last policy stays.
	redis-cli -p "$rp" shutdown nosave >/dev/null 2>&1
	wait_for 5 eval '[ "$(grep -c "unavailable" "$WORK/noredis.log")" -ge 2 ]' ||
		{ echo "loss not noticed: $(cat "$WORK/noredis.log")"; return 1; }
	expect_deny "$ep" blocked.test "denied by policy: blocked.test" || return 1
	[ "$(grep -c "unavailable" "$WORK/noredis.log")" -eq 2 ] ||
		{ echo "transitions not logged once each: $(cat "$WORK/noredis.log")"; return 1; }
}
check "redis down at start: bundled list; switches to redis once loaded; keeps it when lost" redis_down

config_and_auth() {
	# A password-protected Redis, policy in database 2; settings from a config file, one of
	# which a flag overrides.
	local rp ep out
	rp=$(free_port)
	ep=$(free_port)
	start_redis "$rp" --requirepass s3cret
	redis-cli -p "$rp" -a s3cret --no-auth-warning -n 2 sadd embargo:deny confdeny.test >/dev/null
	consent_first --redis "redis://:s3cret@127.0.0.1:$rp/2"
	cat >"$WORK/embargo.conf" <<CONF
# comment
upstream 127.0.0.1:$NSD
redis redis://:s3cret@127.0.0.1:$rp/2
ede-code 15
block-ttl 30
CONF
	start_embargo conf "$ep" --config "$WORK/embargo.conf" --block-ttl 45
	wait_for 5 grep -q "policy loaded from redis: 1 deny" "$WORK/conf.log" ||
		{ cat "$WORK/conf.log"; return 1; }
	out=$(q "$ep" @127.0.0.1 www.confdeny.test +edns)
	grep -q "EDE: 15 (Blocked): 'denied by policy: confdeny.test'" <<<"$out" || { echo "$out"; return 1; }
	grep -qE "confdeny.test.[[:space:]]+45[[:space:]]+IN[[:space:]]+SOA.* 45\$" <<<"$out" ||
		{ echo "block TTL: $out"; return 1; }
	expect_answer "$ep" www.test 192.0.2.1 || return 1
	# A config file with an unknown setting is refused like a bad flag.
	echo "no-such-setting 1" >"$WORK/bad.conf"
	"$EMBARGO" --config "$WORK/bad.conf" 2>"$WORK/err"
	[ $? -eq 2 ] && grep -q "bad.conf:1: unknown setting" "$WORK/err" || { cat "$WORK/err"; return 1; }
}
check "config file, flag override, redis password and database, EDE 15, block TTL" config_and_auth

port_in_use() {
	# A second embargo on the same address is refused, not given half the traffic.
	"$EMBARGO" --listen "127.0.0.1:$EP" --upstream "127.0.0.1:$NSD" --snapshot off \
		--redis "redis://127.0.0.1:$REDIS" 2>"$WORK/second.log"
	local rc=$?
	[ $rc -eq 1 ] || { echo "exit $rc"; return 1; }
	grep -q "cannot listen on UDP 127.0.0.1:$EP: Address already in use" "$WORK/second.log" ||
		{ cat "$WORK/second.log"; return 1; }
}
check "a second embargo on an address in use exits 1 with the reason" port_in_use

cli() {
	"$EMBARGO" --version | grep -q "^embargo " || return 1
	"$EMBARGO" --help | grep -q -- "--listen" || return 1
	local rc
	"$EMBARGO" --no-such-flag 2>"$WORK/err"
	rc=$?
	[ $rc -eq 2 ] && [ "$(wc -l <"$WORK/err")" -eq 1 ] || { echo "rc=$rc $(cat "$WORK/err")"; return 1; }
	"$EMBARGO" --listen 127.0.0.1:99999 2>/dev/null
	[ $? -eq 2 ] || return 1
	"$EMBARGO" --ede-code 3 2>/dev/null
	[ $? -eq 2 ] || return 1
	"$EMBARGO" --redis http://x 2>/dev/null
	[ $? -eq 2 ]
}
check "--help, --version, and bad flags exit 2 with one line" cli

clean_stop() {
	kill -INT "$PID_main"
	wait "$PID_main"
	local rc=$?
	[ $rc -eq 0 ] || { echo "exit status $rc"; return 1; }
	grep -q "stopped: .* queries" "$WORK/main.log" || return 1
	! grep -q "open handles" "$WORK/main.log" || { cat "$WORK/main.log"; return 1; }
}
check "SIGINT stops the daemon cleanly" clean_stop

deny_modes() {
	local p out
	p=$(free_port)
	start_embargo sinkhole "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--deny-mode sinkhole --sinkhole-aaaa 100::1
	out=$(q "$p" @127.0.0.1 dl.kaspersky.com A +edns)
	grep -q "status: NOERROR" <<<"$out" && grep -qE "A[[:space:]]+0\.0\.0\.0" <<<"$out" &&
		grep -q "EDE: 16" <<<"$out" || { echo "sinkhole A: $out"; return 1; }
	out=$(q "$p" @127.0.0.1 dl.kaspersky.com AAAA +edns)
	grep -qE "AAAA[[:space:]]+100::1" <<<"$out" || { echo "sinkhole AAAA: $out"; return 1; }
	out=$(q "$p" @127.0.0.1 dl.kaspersky.com MX +edns)
	grep -q "status: NOERROR" <<<"$out" && grep -q "ANSWER: 0" <<<"$out" &&
		grep -q "SOA" <<<"$out" || { echo "sinkhole MX: $out"; return 1; }
	p=$(free_port)
	start_embargo refusing "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--deny-mode refused
	out=$(q "$p" @127.0.0.1 dl.kaspersky.com A +edns)
	grep -q "status: REFUSED" <<<"$out" && grep -q "EDE: 16" <<<"$out" || { echo "refused: $out"; return 1; }
	# Names the policy does not deny are answered as ever.
	q "$p" @127.0.0.1 www.test A +short | grep -qx 192.0.2.1
}
check "deny modes: sinkhole (A, AAAA, other types NODATA) and refused keep the EDE" deny_modes

# Forwarded and cached answers: AA clear (embargo is not the authority; NSD sets it), TTLs
# capped at --max-client-ttl, AD only from a trusted upstream to a client that asked for it.
answer_flags_and_ttls() {
	local fp p out
	fp=$(free_port)
	python3 "$srcdir/tests/integration/fakedns.py" --port "$fp" --ad --ttl 86400 --lifetime 300 \
		>"$WORK/fake-ad.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 eval "ss -Hlnt | grep -q '127.0.0.1:$fp '" || return 1
	p=$(free_port)
	start_embargo flags "$p" --upstream "127.0.0.1:$fp" --redis "redis://127.0.0.1:$REDIS" \
		--max-client-ttl 60
	local i
	for i in 1 2; do # forwarded, then from the cache
		out=$(q "$p" @127.0.0.1 www.flags.test A +dnssec)
		grep -q "status: NOERROR" <<<"$out" && grep -q "Flags: qr rd ra;" <<<"$out" ||
			{ echo "flags $i: $out"; return 1; }
		grep -qE "www.flags.test.[[:space:]]+60[[:space:]]" <<<"$out" || { echo "ttl $i: $out"; return 1; }
	done
	p=$(free_port)
	start_embargo trusted "$p" --upstream "127.0.0.1:$fp" --redis "redis://127.0.0.1:$REDIS" \
		--upstream-trust-ad yes
	for i in 1 2; do
		out=$(q "$p" @127.0.0.1 www.trusted.test A +dnssec)
		grep -q "status: NOERROR" <<<"$out" && grep -q "Flags: qr rd ra ad;" <<<"$out" ||
			{ echo "trusted, DO $i: $out"; return 1; }
		# No AD, and an answer came: the status line proves it was not a timeout.
		out=$(q "$p" @127.0.0.1 www.trusted.test A +noadflag)
		grep -q "status: NOERROR" <<<"$out" && grep -q "Flags: qr rd ra;" <<<"$out" ||
			{ echo "trusted, neither DO nor AD $i: $out"; return 1; }
	done
	out=$(kdig -p "$NSD" +timeout=3 +retry=0 @127.0.0.1 www.test A)
	grep -q "Flags: qr aa rd;" <<<"$out" || { echo "NSD itself should set AA: $out"; return 1; }
	p=$(free_port)
	start_embargo nsdflags "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS"
	out=$(q "$p" @127.0.0.1 www.test A)
	grep -q "status: NOERROR" <<<"$out" && grep -q "Flags: qr rd ra;" <<<"$out" || { echo "NSD: $out"; return 1; }
}
check "forwarded and cached answers: AA clear, TTLs capped for clients, AD only when trusted and asked" answer_flags_and_ttls

# The doors around the filter are answered locally, never forwarded; --no-local-zone hands one
# back (NSD then refuses the name, which is not in its zones).
bypass_closed() {
	local p out t
	p=$(free_port)
	start_embargo bypass "$p" --upstream "127.0.0.1:$NSD" --redis "redis://127.0.0.1:$REDIS" \
		--no-local-zone mask-h2.icloud.com.
	out=$(q "$p" @127.0.0.1 _dns.resolver.arpa SVCB +edns)
	grep -q "status: NOERROR" <<<"$out" && grep -q "ANSWER: 0" <<<"$out" &&
		grep -q "resolver.arpa.*SOA" <<<"$out" && ! grep -q "EDE" <<<"$out" ||
		{ echo "DDR: $out"; return 1; }
	for t in "use-application-dns.net A" "mask.icloud.com A" "mask.icloud.com TYPE65" \
		"x.use-application-dns.net AAAA"; do
		out=$(q "$p" @127.0.0.1 $t +edns)
		grep -q "status: NXDOMAIN" <<<"$out" && ! grep -q "EDE" <<<"$out" ||
			{ echo "$t: $out"; return 1; }
	done
	# Handed back: forwarded, so NSD's refusal ends in SERVFAIL rather than a local NXDOMAIN.
	q "$p" @127.0.0.1 mask-h2.icloud.com A | grep -q "status: SERVFAIL"
}
check "DDR, Firefox's DoH canary and Apple's Private Relay canary are answered locally" bypass_closed

# RFC 6761/6303 names are answered here as Unbound's default local zones: NSD (the upstream) would
# refuse them all (SERVFAIL), so an answer with the local SOA cannot come from it.
local_zones_and_data() {
	local p out t
	p=$(free_port)
	printf 'local-data printer.lan. 600 IN AAAA 2001:db8::5\n' >"$WORK/local.conf"
	start_embargo_as_is local "$p" --config "$WORK/local.conf" --upstream "127.0.0.1:$NSD" \
		--redis "redis://127.0.0.1:$REDIS" --no-local-zone 168.192.in-addr.arpa \
		--local-data "printer.lan A 192.168.1.5" --local-data "printer.lan TXT \"room 2\"" \
		--local-data "blocked.test A 192.0.2.99" --local-data "www.test A 192.0.2.100"
	out=$(q "$p" @127.0.0.1 localhost A)
	grep -qE "^localhost\.\s+10800\s+IN\s+A\s+127.0.0.1" <<<"$out" && grep -q "Flags: qr aa rd ra" <<<"$out" ||
		{ echo "localhost: $out"; return 1; }
	q "$p" @127.0.0.1 foo.bar.localhost AAAA +short | grep -qx "::1" || { echo "foo.bar.localhost"; return 1; }
	q "$p" @127.0.0.1 1.0.0.127.in-addr.arpa PTR +short | grep -qx "localhost." || { echo "PTR"; return 1; }
	for t in "x.test A" "x.onion A" "a.invalid AAAA" "printer.home.arpa A" "5.1.16.172.in-addr.arpa PTR" \
		"1.2.64.100.in-addr.arpa PTR" "1.254.169.in-addr.arpa PTR" "x.d.f.ip6.arpa PTR" \
		"2.0.0.127.in-addr.arpa PTR" "x.service.arpa SRV"; do
		out=$(q "$p" @127.0.0.1 $t)
		grep -q "status: NXDOMAIN" <<<"$out" && grep -q "SOA.*localhost. nobody.invalid. 1 3600 1200 604800 10800" <<<"$out" ||
			{ echo "$t: $out"; return 1; }
	done
	out=$(q "$p" @127.0.0.1 onion SOA)
	grep -q "status: NOERROR" <<<"$out" && grep -qE "^onion\.\s+10800\s+IN\s+SOA" <<<"$out" || { echo "onion SOA: $out"; return 1; }
	# Handed back: forwarded, and NSD's refusal ends in SERVFAIL.
	q "$p" @127.0.0.1 5.1.168.192.in-addr.arpa PTR | grep -q "status: SERVFAIL" || { echo "handed back"; return 1; }
	# Local data, from flags and from the config file, over UDP and TCP; other types NODATA.
	q "$p" @127.0.0.1 printer.lan A +short | grep -qx "192.168.1.5" || { echo "local A"; return 1; }
	q "$p" @127.0.0.1 printer.lan A +tcp +short | grep -qx "192.168.1.5" || { echo "local A/TCP"; return 1; }
	q "$p" @127.0.0.1 printer.lan AAAA | grep -qE "^printer\.lan\.\s+600\s+IN\s+AAAA\s+2001:db8::5" ||
		{ echo "local AAAA from the config file"; return 1; }
	q "$p" @127.0.0.1 printer.lan TXT +short | grep -qx '"room 2"' || { echo "local TXT"; return 1; }
	out=$(q "$p" @127.0.0.1 printer.lan MX)
	grep -q "status: NOERROR" <<<"$out" && grep -q "ANSWER: 0" <<<"$out" || { echo "local NODATA: $out"; return 1; }
	# Local data inside a local zone (test.) answers; the policy still wins over it.
	q "$p" @127.0.0.1 www.test A +short | grep -qx "192.0.2.100" || { echo "local data in test."; return 1; }
	by_policy "$p" blocked.test || { echo "local data beat the policy"; return 1; }
	# A bad record is refused at start, with the reason.
	"$EMBARGO" --upstream "127.0.0.1:$NSD" --local-data "printer.lan A 300.1.1.1" 2>"$WORK/err"
	[ $? -eq 2 ] && grep -q "local-data: 'printer.lan A 300.1.1.1'" "$WORK/err" || { cat "$WORK/err"; return 1; }
}
check "default local zones (localhost, RFC 6761, RFC 6303) and --local-data" local_zones_and_data

finish
