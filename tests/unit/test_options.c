/* Settings parsing: addresses, Redis URLs, prefixes, and the command line as a whole. */
#include "config.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "resolver/base/local_zone.h"
#include "resolver/base/options.h"

TestSuite(options);

static struct sockaddr_storage addr(const char *s)
{
	struct sockaddr_storage ss;
	cr_assert_eq(options_parse_addr(s, 53, &ss), 0, "%s", s);
	return ss;
}

Test(options, addresses)
{
	char buf[80];
	struct sockaddr_storage ss = addr("127.0.0.1:5354");
	options_format_addr(&ss, buf, sizeof(buf));
	cr_expect_str_eq(buf, "127.0.0.1:5354");
	ss = addr("[::1]:53");
	options_format_addr(&ss, buf, sizeof(buf));
	cr_expect_str_eq(buf, "[::1]:53");
	ss = addr("2001:db8::1");
	options_format_addr(&ss, buf, sizeof(buf));
	cr_expect_str_eq(buf, "[2001:db8::1]:53", "a bare IPv6 address takes the default port");
	ss = addr("192.0.2.1");
	cr_expect_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 53);
	const char *bad[] = {"", "1.2.3", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "[::1",
			     "[::1]x", "host.example:53", "127.0.0.1:53x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(options_parse_addr(bad[i], 53, &ss), -EINVAL, "'%s'", bad[i]);
}

Test(options, redis_urls)
{
	struct options o;
	memset(&o, 0, sizeof(o));
	cr_assert_eq(options_parse_redis_url(&o, "redis://:pa:ss@10.1.2.3:6380/4"), 0);
	cr_expect_str_eq(o.redis_host, "10.1.2.3");
	cr_expect_eq(o.redis_port, 6380);
	cr_expect_str_eq(o.redis_password, "pa:ss");
	cr_expect_str_eq(o.redis_user, "");
	cr_expect_eq(o.redis_db, 4);
	/* An ACL user: AUTH must get the user as well as the password. */
	cr_assert_eq(options_parse_redis_url(&o, "redis://embargo:s3c:ret@10.1.2.3"), 0);
	cr_expect_str_eq(o.redis_user, "embargo");
	cr_expect_str_eq(o.redis_password, "s3c:ret");
	cr_assert_eq(options_parse_redis_url(&o, "redis://localhost"), 0);
	cr_expect_str_eq(o.redis_host, "localhost");
	cr_expect_eq(o.redis_port, 6379);
	cr_expect_str_eq(o.redis_password, "");
	cr_expect_str_eq(o.redis_user, "");
	cr_expect_eq(o.redis_db, 0);
	cr_assert_eq(options_parse_redis_url(&o, "redis://[::1]:7000/"), 0);
	cr_expect_str_eq(o.redis_host, "::1");
	cr_expect_eq(o.redis_port, 7000);
	const char *bad[] = {"http://x", "redis://", "redis://h:0", "redis://h/x", "redis://h:99999",
			     "redis://nocolon@h"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(options_parse_redis_url(&o, bad[i]), -EINVAL, "'%s'", bad[i]);
}

Test(options, cidr)
{
	struct options_cidr c[3];
	cr_assert_eq(options_parse_cidr("10.0.0.0/8", &c[0]), 0);
	cr_assert_eq(options_parse_cidr("192.0.2.128/25", &c[1]), 0);
	cr_assert_eq(options_parse_cidr("2001:db8::/32", &c[2]), 0);
	const char *in[] = {"10.255.0.1", "192.0.2.200", "[2001:db8:ffff::1]"};
	const char *out[] = {"11.0.0.1", "192.0.2.127", "[2001:db9::1]", "[::ffff:10.0.0.1]"};
	for (int i = 0; i < 3; i++) {
		struct sockaddr_storage ss = addr(in[i]);
		cr_expect(options_cidr_match(c, 3, &ss), "%s", in[i]);
	}
	for (int i = 0; i < 4; i++) {
		struct sockaddr_storage ss = addr(out[i]);
		cr_expect_not(options_cidr_match(c, 3, &ss), "%s", out[i]);
	}
	struct options_cidr bad;
	cr_expect_eq(options_parse_cidr("10.0.0.0/33", &bad), -EINVAL);
	cr_expect_eq(options_parse_cidr("10.0.0.0/", &bad), -EINVAL);
	cr_expect_eq(options_parse_cidr("nonsense", &bad), -EINVAL);
	cr_assert_eq(options_parse_cidr("::1", &bad), 0);
	cr_expect_eq(bad.prefix, 128);
}

Test(options, command_line)
{
	struct options o;
	char err[256];
	char *ok[] = {"embargo", "--listen", "127.0.0.1:5354", "--listen", "[::1]:5354",
		      "--upstream", "192.0.2.53", "--ede-code", "17", "--block-ttl", "30",
		      "--snapshot", "off", NULL};
	cr_assert_eq(options_parse(&o, 13, ok, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_eq(o.nlisten, 2);
	cr_expect_eq(o.nupstream, 1);
	cr_expect_eq(o.ede_code, 17);
	cr_expect_eq(o.block_ttl, 30);
	cr_expect_str_eq(o.snapshot, "");
	cr_expect_eq(o.nstatus_allow, 2, "loopback by default");
	char *bad[] = {"embargo", "--upstream", "192.0.2.53", "--timeout", "50", NULL};
	cr_expect_eq(options_parse(&o, 5, bad, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "--timeout"), "%s", err);
}

Test(options, network_guards)
{
	struct options o;
	char err[256];
	char *def[] = {"embargo", "--upstream", "192.0.2.53", NULL};
	cr_assert_eq(options_parse(&o, 3, def, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_eq(o.nacl, 0, "the defaults live in admission, not in the list");
	cr_expect_eq(o.ratelimit, 1000);
	cr_expect_eq(o.ratelimit_slip, 2);
	cr_expect_eq(o.ratelimit_v4_prefix, 24);
	cr_expect_eq(o.ratelimit_v6_prefix, 56);
	cr_expect_eq(o.use_0x20, 1);
	cr_expect_eq(o.cookies, 1);
	cr_expect_eq(o.tcp_idle_ms, 10000);
	cr_expect_eq(o.jostle_ms, 200);

	char *set[] = {"embargo", "--upstream", "192.0.2.53", "--allow", "198.18.0.0/15",
		       "--deny", "203.0.113.0/24", "--allow-snoop", "10.1.0.0/16", "--refuse",
		       "10.0.0.0/8", "--ratelimit-prefix", "22/48", "--use-0x20", "no",
		       "--upstream-cookies", "no", "--tcp-max-queued", "1048576", NULL};
	cr_assert_eq(options_parse(&o, 19, set, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_eq(o.nacl, 4);
	cr_expect_eq(o.acl[0].action, OPTIONS_ACL_ALLOW);
	cr_expect_eq(o.acl[0].net.prefix, 15);
	cr_expect_eq(o.acl[1].action, OPTIONS_ACL_DROP);
	cr_expect_eq(o.acl[2].action, OPTIONS_ACL_SNOOP);
	cr_expect_eq(o.acl[3].action, OPTIONS_ACL_REFUSE);
	cr_expect_eq(o.ratelimit_v4_prefix, 22);
	cr_expect_eq(o.ratelimit_v6_prefix, 48);
	cr_expect_eq(o.use_0x20, 0);
	cr_expect_eq(o.cookies, 0);
	cr_expect_eq(o.tcp_max_queued, 1048576);
	char *off[] = {"embargo", "--upstream", "192.0.2.53", "--no-local-zone", "Resolver.ARPA.",
		       "--no-local-zone", "in-addr.arpa", "--local-data", "printer.lan A 192.168.1.5",
		       NULL};
	cr_assert_eq(options_parse(&o, 9, off, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	struct options one = {0};
	cr_expect_eq(local_zone_off(one.local_off, "resolver.arpa"), 1);
	/* in-addr.arpa: 127, 10, 16 of 172, 168.192, 0, 64 of 100, 169.254, three TEST-NETs and
	 * the broadcast address. */
	cr_expect_eq(local_zone_off(one.local_off, "in-addr.arpa."), 1 + 1 + 16 + 1 + 1 + 64 + 1 + 3 + 1);
	cr_expect_eq(o.local_off[0], one.local_off[0]);
	cr_expect_eq(o.local_off[1], one.local_off[1]);
	cr_expect_eq(o.nlocal_data, 1);
	cr_expect_str_eq(o.local_data[0], "printer.lan A 192.168.1.5");

	const char *bad[][2] = {{"--allow", "198.18.0.0/33"}, {"--use-0x20", "maybe"},
				{"--ratelimit-prefix", "24"}, {"--ratelimit-prefix", "40/56"},
				{"--tcp-max-queued", "1000"}, {"--outgoing-range", "8"},
				{"--no-local-zone", "example.com"}, {"--local-data", "printer.lan A 300.1.1.1"},
				{"--local-data", "printer.lan CH TXT hello"}, {"--local-data", "x.lan OPT"}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char *argv[] = {"embargo", "--upstream", "192.0.2.53", (char *)bad[i][0],
				(char *)bad[i][1], NULL};
		cr_expect_eq(options_parse(&o, 5, argv, err, sizeof(err)), -EINVAL, "%s %s",
			     bad[i][0], bad[i][1]);
		cr_expect_not_null(strstr(err, bad[i][0]), "%s", err);
	}
}

/* A file of the test's own in /tmp, removed by the caller; @return its path (static). */
static const char *temp_file(const char *tag, const char *text)
{
	static char path[80];
	snprintf(path, sizeof(path), "/tmp/embargo-%s-test-%ld", tag, (long)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* --resolv-conf: the nameserver lines of the file named, in order, port 53; comments, other
 * keywords, scoped and malformed addresses skipped; no file or no nameserver refuses to start. */
Test(options, resolv_conf)
{
	static struct options o;
	char err[256], path[80], buf[80];
	strcpy(path, temp_file("resolv", "# nameserver 10.9.9.9\n"
					 "; nameserver 10.8.8.8\n"
					 "search example.org\n"
					 "nameserver 192.0.2.7\n"
					 "  nameserver\t2001:db8::53\n"
					 "nameserver fe80::1%eth0\n"
					 "nameserver not-an-address\n"
					 "options ndots:2 timeout:1\n"
					 "nameserver 198.51.100.9\n"));
	char *a[] = {"embargo", "--resolv-conf", path, NULL};
	cr_assert_eq(options_parse(&o, 3, a, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_assert_eq(o.nupstream, 3);
	const char *want[] = {"192.0.2.7:53", "[2001:db8::53]:53", "198.51.100.9:53"};
	for (unsigned i = 0; i < 3; i++) {
		options_format_addr(&o.upstream[i], buf, sizeof(buf));
		cr_expect_str_eq(buf, want[i]);
	}
	cr_expect_str_eq(o.resolv_conf, path);
	/* --upstream wins: the file is not read at all (here it does not exist). */
	char *b[] = {"embargo", "--resolv-conf", "/nonexistent/resolv.conf", "--upstream",
		     "192.0.2.53", NULL};
	cr_assert_eq(options_parse(&o, 5, b, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_eq(o.nupstream, 1);
	char *c[] = {"embargo", "--resolv-conf", "/nonexistent/resolv.conf", NULL};
	cr_expect_eq(options_parse(&o, 3, c, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "/nonexistent/resolv.conf"), "%s", err);
	unlink(path);
	strcpy(path, temp_file("resolv", "search example.org\n# nameserver 10.9.9.9\n"));
	char *d[] = {"embargo", "--resolv-conf", path, NULL};
	cr_expect_eq(options_parse(&o, 3, d, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "no nameserver"), "%s", err);
	unlink(path);
}

/* A reload's settings against the running ones: what was given and is no longer (a file read
 * while half written), named; upstream and resolv-conf stand in for each other. */
Test(options, lost)
{
	static struct options was, now;
	char err[256], names[256];
	char *a[] = {"embargo", "--upstream", "192.0.2.53", "--redis-prefix", "p", "--max-shrink",
		     "1", "--deny-mode", "sinkhole", NULL};
	cr_assert_eq(options_parse(&was, 9, a, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_eq(options_lost(&was, &was, names, sizeof(names)), 0);
	cr_expect_str_eq(names, "");
	/* A resolv.conf of the test's own: the machine's may name no nameserver, or be absent. */
	char resolv[80];
	strcpy(resolv, temp_file("resolv", "nameserver 192.0.2.53\n"));
	char *b[] = {"embargo", "--resolv-conf", resolv, "--deny-mode", "nxdomain", NULL};
	cr_assert_eq(options_parse(&now, 5, b, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	unlink(resolv);
	cr_expect_eq(options_lost(&was, &now, names, sizeof(names)), 2);
	cr_expect_str_eq(names, "redis-prefix, max-shrink");
	cr_expect_eq(options_lost(&now, &was, names, sizeof(names)), 0, "%s", names);
	cr_expect_eq(now.config_unterminated, 0);
	/* A file whose last line has no newline (cut in the middle of a value?) says so. */
	char path[64];
	snprintf(path, sizeof(path), "/tmp/embargo-conf-test-%ld", (long)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "upstream 192.0.2.53\nmax-ttl 36", 30), 30);
	close(fd);
	char *c[] = {"embargo", "--config", path, NULL};
	cr_assert_eq(options_parse(&now, 3, c, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_eq(now.config_unterminated, 1);
	cr_expect_eq(now.max_ttl, 36);
	fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_eq(write(fd, "\n", 1), 1);
	close(fd);
	cr_assert_eq(options_parse(&now, 3, c, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_eq(now.config_unterminated, 0);
	unlink(path);
}

/* --resolver-name: a domain name (trailing dot dropped) with room for _dns. in front of it;
 * empty by default (the certificate's name then); --check-config prints it. */
Test(options, resolver_name)
{
	static struct options o;
	char err[256];
	char *def[] = {"embargo", "--upstream", "192.0.2.53", NULL};
	cr_assert_eq(options_parse(&o, 3, def, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_str_eq(o.resolver_name, "");
	char *set[] = {"embargo", "--upstream", "192.0.2.53", "--resolver-name", "DNS.example.org.",
		       NULL};
	cr_assert_eq(options_parse(&o, 5, set, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_str_eq(o.resolver_name, "DNS.example.org");
	char printed[8192] = "";
	FILE *f = fmemopen(printed, sizeof(printed) - 1, "w");
	cr_assert_not_null(f);
	options_print(&o, f);
	fclose(f);
	cr_expect_not_null(strstr(printed, "\nresolver-name DNS.example.org\n"), "%s", printed);

	char label63[64], long_name[260];
	memset(label63, 'a', 63);
	label63[63] = '\0';
	/* 4 labels of 63 and their dots: 255 octets on the wire, no room for _dns. */
	snprintf(long_name, sizeof(long_name), "%s.%s.%s.%.57s", label63, label63, label63, label63);
	const char *bad[] = {".", "", "bad name", "*.example.org", "192.0.2.1", long_name};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char *argv[] = {"embargo", "--upstream", "192.0.2.53", "--resolver-name",
				(char *)bad[i], NULL};
		cr_expect_eq(options_parse(&o, 5, argv, err, sizeof(err)), -EINVAL, "'%s'", bad[i]);
		cr_expect_not_null(strstr(err, "--resolver-name"), "%s", err);
	}
}

/* --listen-https: port 443 unless given, needs the certificate pair, and shares no TCP port
 * with --listen or --listen-tls; --https-path is a plain path. */
Test(options, https)
{
	struct options o;
	char err[256];
	char *ok[] = {"embargo", "--upstream", "192.0.2.53", "--listen", "127.0.0.1:53",
		      "--listen-https", "127.0.0.1", "--listen-https", "[::1]:8443", "--tls-cert",
		      "c.pem", "--tls-key", "k.pem", "--https-path", "/q", NULL};
	cr_assert_eq(options_parse(&o, 15, ok, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_eq(o.nlisten_https, 2);
	cr_expect_eq(options_port(&o.listen_https[0]), 443);
	cr_expect_eq(options_port(&o.listen_https[1]), 8443);
	cr_expect_str_eq(o.https_path, "/q");
	char *def[] = {"embargo", "--upstream", "192.0.2.53", NULL};
	cr_assert_eq(options_parse(&o, 3, def, err, sizeof(err)), OPTIONS_RUN, "%s", err);
	cr_expect_str_eq(o.https_path, "/dns-query");
	cr_expect_eq(o.nlisten_https, 0);

	char *nocert[] = {"embargo", "--upstream", "192.0.2.53", "--listen-https", "127.0.0.1",
			  NULL};
	cr_expect_eq(options_parse(&o, 5, nocert, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "--listen-https needs --tls-cert"), "%s", err);
	const char *clash[][2] = {{"--listen", "127.0.0.1:443"}, {"--listen", "0.0.0.0:443"},
				  {"--listen-tls", "127.0.0.1:443"}};
	for (size_t i = 0; i < sizeof(clash) / sizeof(*clash); i++) {
		char *argv[] = {"embargo", "--upstream", "192.0.2.53", "--tls-cert", "c.pem",
				"--tls-key", "k.pem", "--listen-https", "127.0.0.1",
				(char *)clash[i][0], (char *)clash[i][1], NULL};
		cr_expect_eq(options_parse(&o, 11, argv, err, sizeof(err)), -EINVAL, "%s %s",
			     clash[i][0], clash[i][1]);
		cr_expect_not_null(strstr(err, "--listen-https 127.0.0.1:443 overlaps"), "%s", err);
	}
	const char *paths[] = {"dns-query", "/dns-query?x", "/a b", ""};
	for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++) {
		char *argv[] = {"embargo", "--upstream", "192.0.2.53", "--https-path",
				(char *)paths[i], NULL};
		cr_expect_eq(options_parse(&o, 5, argv, err, sizeof(err)), -EINVAL, "'%s'", paths[i]);
		cr_expect_not_null(strstr(err, "--https-path"), "%s", err);
	}
}
