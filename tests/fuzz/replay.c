/* Runs a fuzz target over files, without libFuzzer: `make check` replays each corpus this way
 * (under ASan/UBSan in the sanitizer build). Usage: replay FILE... */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	int ran = 0;
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (!f) {
			perror(argv[i]);
			return 1;
		}
		static uint8_t buf[1 << 20];
		size_t n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		/* A fresh heap copy of exactly n bytes, so ASan sees any read past the input. */
		uint8_t *data = malloc(n ? n : 1);
		for (size_t k = 0; k < n; k++)
			data[k] = buf[k];
		LLVMFuzzerTestOneInput(data, n);
		free(data);
		ran++;
	}
	printf("replayed %d inputs\n", ran);
	return ran > 0 ? 0 : 1;
}
