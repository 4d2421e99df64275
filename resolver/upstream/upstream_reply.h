/* A UDP reply to an attempt or a probe: read from the attempt's own connected socket, a bounded
 * number per wake-up, accepted only if it matches everything we sent (address and port, ID,
 * question with its case, cookie), then handed on: the answer to upstream_question, a truncated
 * one to upstream_tcp, health news to upstream_health. Private to resolver/upstream/. Must not
 * open a socket or send: what is asked next is upstream_question's choice. */
#pragma once

#include <uv.h>

/** The poll callback of every upstream socket (u->readable): reads and handles its replies. */
void upstream_reply_readable(uv_poll_t *h, int status, int events);
