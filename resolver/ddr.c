/* DDR for embargo itself (see ddr.h): the encrypted listeners of the settings become endpoints
 * in listener order, DoT's first, then DoH's (with their path's URI template), and the
 * certificate gives the name when --resolver-name does not. A name it cannot use is left out
 * ("." then, and said), never guessed. It must not keep anything: the local answers copy what
 * they serve. */
#include "config.h"

#include "resolver/ddr.h"

#include <stdio.h>
#include <string.h>

#include "policy/name.h"
#include "resolver/base/log.h"

const char *ddr_name(const struct options *o, const tls_creds_t *tls)
{
	if (o->resolver_name[0])
		return o->resolver_name; /* Checked when it was set. */
	const char *cert = tls ? tls_creds_name(tls) : "";
	size_t len = strlen(cert);
	if (len > 1 && cert[len - 1] == '.')
		len--;
	struct name n;
	if (len == 0 || name_from_text(&n, cert, len) < 0 || n.nlabels == 0)
		return NULL;
	return cert;
}

local_t *ddr_local_new(const struct options *o, const tls_creds_t *tls, char *err,
		       size_t errlen)
{
	struct local_ddr d = {.target = ddr_name(o, tls), .answer_target = o->resolver_name[0] != '\0'};
	for (unsigned i = 0; i < o->nlisten_tls; i++)
		d.endpoint[d.nendpoint++] = (struct local_ddr_endpoint){.alpn = "dot",
									 .addr = o->listen_tls[i]};
	/* Then DoH's, with ALPN h2 and the URI template of its path (RFC 9461). */
	char tpl[sizeof(o->https_path) + 8];
	snprintf(tpl, sizeof(tpl), "%s{?dns}", o->https_path);
	for (unsigned i = 0; i < o->nlisten_https; i++)
		d.endpoint[d.nendpoint++] = (struct local_ddr_endpoint){
			.alpn = "h2", .dohpath = tpl, .addr = o->listen_https[i]};
	return local_new(o, &d, err, errlen);
}

void ddr_say(const struct options *o, const tls_creds_t *tls, const char *prefix)
{
	unsigned n = o->nlisten_tls + o->nlisten_https;
	if (n == 0)
		return;
	const char *name = ddr_name(o, tls);
	if (!name)
		log_warn("%sDDR: _dns.resolver.arpa names %u encrypted endpoint%s with TargetName \".\": "
			 "neither --resolver-name nor a DNS name in the certificate's SubjectAltName, "
			 "so clients cannot verify the designation (RFC 9462 section 4.2)",
			 prefix, n, n == 1 ? "" : "s");
	else if (tls && !tls_creds_is_valid_for(tls, name))
		log_warn("%sDDR: the certificate is not valid for %s: clients cannot verify the "
			 "designation of %u encrypted endpoint%s (RFC 9462 section 4.2)", prefix, name, n,
			 n == 1 ? "" : "s");
	else
		log_info("%sDDR: _dns.resolver.arpa SVCB designates %s, %u encrypted endpoint%s",
			 prefix, name, n, n == 1 ? "" : "s");
}
