/* Name parsing into lookup format. Text and wire parsers collect label offsets leaf-first and
 * then emit them reversed; all work is on the caller's struct, never the heap. */
#include "config.h"

#include "policy/name.h"

#include <errno.h>
#include <string.h>

static inline uint8_t lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

static int is_text_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Emit labels given leaf-first as (pointer, length) into lookup format. */
static void emit_reversed(struct name *n, const uint8_t *const *lab, const uint8_t *lablen,
			  unsigned count)
{
	uint8_t *out = n->key;
	for (unsigned i = count; i-- > 0;) {
		*out++ = lablen[i];
		for (unsigned j = 0; j < lablen[i]; j++)
			*out++ = lower(lab[i][j]);
	}
	*out++ = 0;
	n->keylen = (uint16_t)(out - n->key);
	n->nlabels = (uint8_t)count;
}

int name_from_text(struct name *n, const char *text, size_t len)
{
	const uint8_t *lab[128];
	uint8_t lablen[128];
	unsigned count = 0;
	size_t wire = 1;

	if (len == 1 && text[0] == '.') {
		emit_reversed(n, lab, lablen, 0);
		return 0;
	}
	if (len > 0 && text[len - 1] == '.')
		len--;
	if (len == 0)
		return -EINVAL;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && text[i] != '.') {
			if (!is_text_char((unsigned char)text[i]))
				return -EINVAL;
			continue;
		}
		size_t l = i - start;
		if (l == 0 || l > NAME_MAXLABEL)
			return -EINVAL;
		wire += l + 1;
		if (wire > NAME_MAXWIRE)
			return -EINVAL;
		lab[count] = (const uint8_t *)text + start;
		lablen[count] = (uint8_t)l;
		count++;
		start = i + 1;
	}
	emit_reversed(n, lab, lablen, count);
	return 0;
}

int name_from_wire(struct name *n, const uint8_t *wire, size_t len, size_t *wirelen)
{
	const uint8_t *lab[128];
	uint8_t lablen[128];
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
		lab[count] = wire + off + 1;
		lablen[count] = l;
		count++;
		off += 1 + (size_t)l;
	}
	*wirelen = off + 1;
	emit_reversed(n, lab, lablen, count);
	return 0;
}

int name_from_packet(struct name *n, const uint8_t *pkt, size_t len, size_t off, size_t *next)
{
	const uint8_t *lab[128];
	uint8_t lablen[128];
	unsigned count = 0, jumps = 0;
	size_t wire = 1;
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
			off = ((size_t)(l & 0x3F) << 8) | pkt[off + 1];
			continue;
		}
		if (l > NAME_MAXLABEL)
			return -EBADMSG;
		wire += 1 + (size_t)l;
		if (wire > NAME_MAXWIRE || off + 1 + l > len)
			return -EBADMSG;
		lab[count] = pkt + off + 1;
		lablen[count] = l;
		count++;
		off += 1 + (size_t)l;
	}
	emit_reversed(n, lab, lablen, count);
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
