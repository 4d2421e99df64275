/* Name parsing: text and wire into lookup format. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "policy/name.h"

TestSuite(name);

static struct name text(const char *s)
{
	struct name n;
	cr_assert_eq(name_from_text(&n, s, strlen(s)), 0, "%s", s);
	return n;
}

Test(name, text_is_reversed_and_lowered)
{
	struct name n = text("WWW.Example.COM");
	const uint8_t want[] = {3, 'c', 'o', 'm', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'w', 'w', 'w', 0};
	cr_assert_eq(n.keylen, sizeof(want));
	cr_assert_arr_eq(n.key, want, sizeof(want));
	cr_assert_eq(n.nlabels, 3);
}

Test(name, trailing_dot_is_optional)
{
	struct name a = text("example.com"), b = text("example.com.");
	cr_assert_eq(a.keylen, b.keylen);
	cr_assert_arr_eq(a.key, b.key, a.keylen);
}

Test(name, root)
{
	struct name n = text(".");
	cr_assert_eq(n.keylen, 1);
	cr_assert_eq(n.key[0], 0);
	cr_assert_eq(n.nlabels, 0);
}

Test(name, invalid_text_is_rejected)
{
	const char *bad[] = {"", "..", "a..b", ".a", "a b", "exa mple.com", "bad!.com", "é.com",
			     "a\tb", "a/b", "0.0.0.0", "127.0.0.1", "1", "example.123", "10.0.0.1."};
	struct name n;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(name_from_text(&n, bad[i], strlen(bad[i])), -EINVAL, "'%s'", bad[i]);
}

Test(name, label_and_name_limits)
{
	char buf[400];
	struct name n;
	memset(buf, 'a', 63);
	cr_assert_eq(name_from_text(&n, buf, 63), 0);
	memset(buf, 'a', 64);
	cr_assert_eq(name_from_text(&n, buf, 64), -EINVAL);
	/* 4 labels of 63 plus dots: 4*64 + 1 = 257 wire octets, too long. */
	size_t w = 0;
	for (int l = 0; l < 4; l++) {
		memset(buf + w, 'b', 63);
		w += 63;
		buf[w++] = '.';
	}
	cr_assert_eq(name_from_text(&n, buf, w - 1), -EINVAL);
	/* 3 labels of 63 and one of 61: 3*64 + 62 + 1 = 255, the longest legal name. */
	w = 3 * 64 + 61;
	memset(buf + 3 * 64, 'c', 61);
	cr_assert_eq(name_from_text(&n, buf, w), 0);
	cr_assert_eq(n.keylen, 255);
}

Test(name, wire_matches_text)
{
	const uint8_t wire[] = {3, 'W', 'w', 'W', 7, 'e', 'X', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0xff};
	struct name a, b = text("www.example.com");
	size_t len;
	cr_assert_eq(name_from_wire(&a, wire, sizeof(wire), &len), 0);
	cr_assert_eq(len, 17);
	cr_assert_eq(a.keylen, b.keylen);
	cr_assert_arr_eq(a.key, b.key, a.keylen);
}

Test(name, wire_rejects_truncation_and_pointers)
{
	const uint8_t trunc[] = {3, 'w', 'w'};
	const uint8_t noend[] = {3, 'w', 'w', 'w'};
	const uint8_t ptr[] = {3, 'w', 'w', 'w', 0xC0, 0x0C};
	struct name n;
	size_t len;
	cr_expect_eq(name_from_wire(&n, trunc, sizeof(trunc), &len), -EBADMSG);
	cr_expect_eq(name_from_wire(&n, noend, sizeof(noend), &len), -EBADMSG);
	cr_expect_eq(name_from_wire(&n, ptr, sizeof(ptr), &len), -EBADMSG);
	cr_expect_eq(name_from_wire(&n, trunc, 0, &len), -EBADMSG);
}

Test(name, packet_follows_pointers_and_stops_loops)
{
	/* 12 header octets, "example.com" at 12, then "www" + pointer to 12 at 25. */
	uint8_t pkt[64] = {0};
	const uint8_t ex[] = {7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0};
	memcpy(pkt + 12, ex, sizeof(ex));
	const uint8_t www[] = {3, 'w', 'w', 'w', 0xC0, 12};
	memcpy(pkt + 25, www, sizeof(www));
	struct name n, want = text("www.example.com");
	size_t next;
	cr_assert_eq(name_from_packet(&n, pkt, 31, 25, &next), 0);
	cr_assert_eq(next, 31);
	cr_assert_arr_eq(n.key, want.key, want.keylen);
	/* A pointer to itself. */
	pkt[40] = 0xC0;
	pkt[41] = 40;
	cr_assert_eq(name_from_packet(&n, pkt, 42, 40, &next), -EBADMSG);
	/* A pointer past the end. */
	pkt[40] = 0xC0;
	pkt[41] = 60;
	cr_assert_eq(name_from_packet(&n, pkt, 42, 40, &next), -EBADMSG);
}

Test(name, suffix_to_text)
{
	struct name n = text("a.b.example.com");
	char buf[300];
	cr_assert_eq(name_suffix_to_text(&n, 2, buf, sizeof(buf)), 11);
	cr_assert_str_eq(buf, "example.com");
	cr_assert_eq(name_to_text(&n, buf, sizeof(buf)), 15);
	cr_assert_str_eq(buf, "a.b.example.com");
	cr_assert_eq(name_suffix_to_text(&n, 0, buf, sizeof(buf)), 1);
	cr_assert_str_eq(buf, ".");
	cr_assert_eq(name_to_text(&n, buf, 5), -ENOSPC);
}

/* Regression: hosts files' addresses ("0.0.0.0 0.0.0.0") were imported as names. No TLD is all
 * digits, so a name ending in one is refused; digits elsewhere are ordinary. */
Test(name, ip_literals_are_not_names)
{
	const char *ok[] = {"123.example", "1.2.3.example", "a.b1", "1a", "example.x1"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		text(ok[i]);
	struct name n;
	cr_expect_eq(name_from_text(&n, "0.0.0.0", 7), -EINVAL);
	cr_expect_eq(name_from_text(&n, "example.2024", 12), -EINVAL);
}
