/* bench/bare: the floor for bench/e2e.sh, a UDP responder that does no DNS work. It receives a
 * batch with recvmmsg(), sets QR in each datagram and sends the batch back with one sendmmsg():
 * the cost of the system calls alone, against which a real server's CPU per query compares.
 * Usage: bench/bare PORT (listens on 127.0.0.1; stop it with a signal). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: bench/bare PORT\n");
		return 2;
	}
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("bench/bare");
		return 1;
	}
	static uint8_t bufs[BATCH][4096];
	struct sockaddr_in peers[BATCH];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	for (;;) {
		for (int i = 0; i < BATCH; i++) {
			iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = sizeof(bufs[i])};
			msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &peers[i],
							       .msg_namelen = sizeof(peers[i]),
							       .msg_iov = &iov[i], .msg_iovlen = 1}};
		}
		int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("bench/bare: recvmmsg");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (msgs[i].msg_len >= 3)
				bufs[i][2] |= 0x80;
			iov[i].iov_len = msgs[i].msg_len;
		}
		if (sendmmsg(fd, msgs, (unsigned)n, 0) < 0 && errno != EAGAIN)
			perror("bench/bare: sendmmsg");
	}
}
