/* Name parsing into lookup format. Text and wire parsers collect label offsets leaf-first and
 * then emit them reversed; all work is on the caller's struct, never the heap. */
#include "config.h"

#include "policy/name.h"

#include <errno.h>
#include <string.h>

/* Name octets in presentation text: letters (lower-cased), digits, '-' and '_'; '.' maps to
 * DOT and everything else to 0. */
#define DOT 1
#define AZ(lo) [lo] = lo, [lo - 32] = lo
static const uint8_t TEXT_MAP[256] = {
	AZ('a'), AZ('b'), AZ('c'), AZ('d'), AZ('e'), AZ('f'), AZ('g'), AZ('h'), AZ('i'),
	AZ('j'), AZ('k'), AZ('l'), AZ('m'), AZ('n'), AZ('o'), AZ('p'), AZ('q'), AZ('r'),
	AZ('s'), AZ('t'), AZ('u'), AZ('v'), AZ('w'), AZ('x'), AZ('y'), AZ('z'),
	['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3', ['4'] = '4', ['5'] = '5',
	['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['-'] = '-', ['_'] = '_',
	['.'] = DOT,
};
#undef AZ

/* The parsers first gather a name in wire order (leaf first, [len][octets]...) into a scratch
 * buffer padded so that it can be read and written 8 octets at a time. */
#define SCRATCH (NAME_MAXWIRE + 16)

/* Lower-case the ASCII capitals among 8 octets at once. Length octets (0..63) are never
 * capitals, so whole wire names can go through it. */
static inline uint64_t lower8(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ULL, high = ones << 7;
	uint64_t low7 = x & ~high;
	uint64_t ge_a = low7 + ones * (0x80 - 'A'); /* High bit: octet >= 'A'. */
	uint64_t gt_z = low7 + ones * (0x7F - 'Z'); /* High bit: octet > 'Z'. */
	return x | (((ge_a & ~gt_z & ~x) & high) >> 2);
}

static void lower_scratch(uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		w = lower8(w);
		memcpy(s + i, &w, 8);
	}
}

/* Emit the count labels gathered in s (label i's length octet at s[at[i]], leaf first) root
 * first into lookup format. */
static void emit_reversed(struct name *n, const uint8_t *s, const uint8_t *at, unsigned count)
{
	uint8_t *out = n->key;
	size_t o = 0;
	for (unsigned i = count; i-- > 0;) {
		const uint8_t *l = s + at[i];
		size_t m = 1u + l[0];
		/* Whole words while they fit the key: the excess is overwritten by the next label or
		 * lies past the end of the key. */
		if (o + 64 <= sizeof(n->key))
			for (size_t j = 0; j < m; j += 8)
				memcpy(out + o + j, l + j, 8);
		else
			memcpy(out + o, l, m);
		o += m;
	}
	out[o++] = 0;
	n->keylen = (uint16_t)o;
	n->nlabels = (uint8_t)count;
}

/* No top-level domain is all digits, so a name ending in such a label is an IPv4 address (or a
 * typo): refusing it keeps hosts-file addresses and the like out of the policy. */
static int all_digits(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

int name_from_text(struct name *n, const char *text, size_t len)
{
	uint8_t s[SCRATCH], at[128];
	unsigned count = 0;

	if (len == 1 && text[0] == '.') {
		n->key[0] = 0; /* The root. */
		n->keylen = 1;
		n->nlabels = 0;
		return 0;
	}
	if (len > 0 && text[len - 1] == '.')
		len--;
	/* In wire format every dot becomes a length octet, plus the first length and the root. */
	if (len == 0 || len + 2 > NAME_MAXWIRE)
		return -EINVAL;
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = TEXT_MAP[(unsigned char)text[i]];
		if (c > DOT) {
			s[i + 1] = c;
			continue;
		}
		size_t l = i - start;
		if (c != DOT || l == 0 || l > NAME_MAXLABEL)
			return -EINVAL;
		s[start] = (uint8_t)l;
		at[count++] = (uint8_t)start;
		start = i + 1;
	}
	size_t l = len - start;
	if (l == 0 || l > NAME_MAXLABEL || all_digits(text + start, l))
		return -EINVAL;
	s[start] = (uint8_t)l;
	at[count++] = (uint8_t)start;
	memset(s + len + 1, 0, 8);
	emit_reversed(n, s, at, count);
	return 0;
}

int name_from_wire(struct name *n, const uint8_t *wire, size_t len, size_t *wirelen)
{
	uint8_t s[SCRATCH], at[128];
	unsigned count = 0;
	size_t off = 0;

	for (;;) {
		if (off >= len)
			return -EBADMSG;
		uint8_t l = wire[off];
		if (l == 0)
			break;
		if (l > NAME_MAXLABEL)
			return -EBADMSG; /* Compression or an extended label type. */
		if (off + 1 + l + 1 > NAME_MAXWIRE || off + 1 + l >= len)
			return -EBADMSG;
		at[count++] = (uint8_t)off;
		off += 1 + (size_t)l;
	}
	*wirelen = off + 1;
	memcpy(s, wire, off);
	memset(s + off, 0, 8);
	lower_scratch(s, off);
	emit_reversed(n, s, at, count);
	return 0;
}

int name_from_packet(struct name *n, const uint8_t *pkt, size_t len, size_t off, size_t *next)
{
	uint8_t s[SCRATCH], at[128];
	unsigned count = 0, jumps = 0;
	size_t wire = 0; /* Octets gathered into s. */
	int jumped = 0;

	for (;;) {
		if (off >= len)
			return -EBADMSG;
		uint8_t l = pkt[off];
		if (l == 0) {
			if (!jumped)
				*next = off + 1;
			break;
		}
		if ((l & 0xC0) == 0xC0) {
			if (off + 1 >= len || ++jumps > 64)
				return -EBADMSG;
			if (!jumped)
				*next = off + 2;
			jumped = 1;
			/* A pointer goes back to an earlier name, never into the 12-octet header. */
			size_t to = ((size_t)(l & 0x3F) << 8) | pkt[off + 1];
			if (to < 12 || to >= off)
				return -EBADMSG;
			off = to;
			continue;
		}
		if (l > NAME_MAXLABEL)
			return -EBADMSG;
		if (wire + 1 + l + 1 > NAME_MAXWIRE || off + 1 + l > len)
			return -EBADMSG;
		at[count++] = (uint8_t)wire;
		memcpy(s + wire, pkt + off, 1 + (size_t)l);
		wire += 1 + (size_t)l;
		off += 1 + (size_t)l;
	}
	memset(s + wire, 0, 8);
	lower_scratch(s, wire);
	emit_reversed(n, s, at, count);
	return 0;
}

int name_suffix_to_text(const struct name *n, unsigned depth, char *buf, size_t cap)
{
	/* Labels are stored root-first; the presentation form is leaf-first. */
	size_t off[128];
	unsigned count = 0;
	for (size_t p = 0; n->key[p] != 0 && count < depth; p += 1 + n->key[p])
		off[count++] = p;
	if (count == 0) {
		if (cap < 2)
			return -ENOSPC;
		buf[0] = '.';
		buf[1] = '\0';
		return 1;
	}
	size_t w = 0;
	for (unsigned i = count; i-- > 0;) {
		uint8_t l = n->key[off[i]];
		if (w + l + 2 > cap)
			return -ENOSPC;
		memcpy(buf + w, n->key + off[i] + 1, l);
		w += l;
		if (i > 0)
			buf[w++] = '.';
	}
	buf[w] = '\0';
	return (int)w;
}

int name_suffix_to_wire(const struct name *n, unsigned depth, uint8_t *out, size_t cap)
{
	size_t off[128];
	unsigned count = 0;
	for (size_t p = 0; n->key[p] != 0 && count < depth; p += 1 + n->key[p])
		off[count++] = p;
	size_t w = 0;
	for (unsigned i = count; i-- > 0;) {
		uint8_t l = n->key[off[i]];
		if (w + 1 + l + 1 > cap)
			return -ENOSPC;
		memcpy(out + w, n->key + off[i], 1 + (size_t)l);
		w += 1 + (size_t)l;
	}
	if (w + 1 > cap)
		return -ENOSPC;
	out[w++] = 0;
	return (int)w;
}

int name_to_text(const struct name *n, char *buf, size_t cap)
{
	return name_suffix_to_text(n, n->nlabels, buf, cap);
}
