/* JSON text for the query log and embargo-policy's reports. It writes to the stream it is given
 * and never opens, flushes or closes one; stdio may block, so it must not be called on a worker. */
#pragma once

#include <stdio.h>

/** A JSON string's contents (no quotes): quotes, backslashes and control octets escaped. */
static inline void json_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
}
