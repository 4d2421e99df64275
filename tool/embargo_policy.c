/* embargo-policy: the tool for the people who edit the list. This file holds the command line:
 * global options, the usage text and the dispatch; each command lives in a policy_tool_*.c file
 * and decides with the daemon's own policy code, so the tool cannot disagree with the daemon. It
 * never talks to a running resolver: changes reach the resolvers only through Redis. */
#include "config.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resolver/base/options.h"
#include "tool/policy_tool.h"

#define USAGE \
	"Usage: embargo-policy [OPTIONS] COMMAND ...\n" \
	"Edit and inspect the policy embargo enforces (kept in Redis under PREFIX:deny, :allow,\n" \
	"and :reason). Every change is recorded in the stream PREFIX:audit.\n\n" \
	"Commands:\n" \
	"  import [--allow] FILE...   add the names in FILE to PREFIX:deny (PREFIX:allow), reasons\n" \
	"                             to PREFIX:reason; FILE holds \"domain TAB reason\" lines, plain\n" \
	"                             domains, or hosts-file lines (\"0.0.0.0 a.example b.example\");\n" \
	"                             '-' is stdin\n" \
	"  import --replace [--allow] [--yes] FILE\n" \
	"                             make the deny (allow) set and the reason hash hold exactly\n" \
	"                             FILE's rules, in one transaction; prints the diff first and\n" \
	"                             refuses a change beyond --max-shrink without --yes\n" \
	"  add [--allow] NAME [REASON]  add one deny (allow) rule, with a reason\n" \
	"  remove [--allow] NAME...   lift rules, whatever case or trailing dot the members have;\n" \
	"                             their reasons go too\n" \
	"  accept [--sign KEY] [--from SNAPSHOT|DIGEST] [--snapshot SNAPSHOT] [--ttl T] VERSION\n" \
	"                             consent (PREFIX:accept) to the transition from the policy\n" \
	"                             the resolvers enforce (--from: a snapshot, the default\n" \
	"                             " POLICY_TOOL_SNAPSHOT ", a digest found in\n" \
	"                             --snapshot's files or the bundled list, or 'bundled' for\n" \
	"                             a fresh instance's list) to VERSION, the held version they\n" \
	"                             show; prints the diff; refused when Redis holds anything\n" \
	"                             else; used once, expires after T (24h)\n" \
	"  keygen PRIVATE PUBLIC      make an Ed25519 key pair for signed consents (--sign;\n" \
	"                             resolvers check them with --consent-key PUBLIC)\n" \
	"  restore [--force] [--yes] [SNAPSHOT]  write a snapshot file's rules back into Redis,\n" \
	"                             in one transaction (default " POLICY_TOOL_SNAPSHOT ");\n" \
	"                             --force: also one saved under another prefix\n" \
	"  explain NAME...            which rule decides NAME, and why\n" \
	"  diff [SNAPSHOT]            what Redis holds against a snapshot an instance enforces\n" \
	"  digest                     the full digest (SHA-256) of what Redis holds\n" \
	"  verify                     check every member as the daemon will; exit 1 if it skips any\n" \
	"  log [-n N]                 the last N changes (default 20), newest first\n" \
	"  report [--since DURATION] [--format table|csv|json]\n" \
	"                             the clients embargo denied (instances run with\n" \
	"                             --report-clients): denials, first and last seen, rules and\n" \
	"                             reasons, most recently seen first; DURATION like 7d (the\n" \
	"                             default), 24h or 2w: counts are kept per UTC day, and a\n" \
	"                             client's day counts whole when its last denial is in it\n\n" \
	"Options:\n" \
	"  --redis URL                redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n" \
	"                             (default redis://127.0.0.1:6379)\n" \
	"  --redis-prefix NAME        key prefix (default embargo)\n" \
	"  --by NAME                  who makes the change, for the audit (default: login name)\n" \
	"  --why TEXT                 why, for the audit and consent records\n" \
	"  --help, --version\n\n" \
	"Exit status: 0 ok, 1 failure (or problems found by verify), 2 usage.\n"

struct command {
	const char *name;
	int (*run)(struct policy_tool *t, int argc, char **argv);
};

static const struct command COMMANDS[] = {
	{"import", policy_tool_import_run},        {"restore", policy_tool_import_restore},
	{"add", policy_tool_edit_add},             {"remove", policy_tool_edit_remove},
	{"accept", policy_tool_consent_accept},    {"keygen", policy_tool_consent_keygen},
	{"digest", policy_tool_consent_digest},       {"explain", policy_tool_inspect_explain},
	{"diff", policy_tool_inspect_diff},        {"verify", policy_tool_inspect_verify},
	{"log", policy_tool_inspect_log},          {"report", policy_tool_report},
};

static const char *login_name(void)
{
	const char *name = getlogin();
	if (name && *name)
		return name;
	struct passwd *pw = getpwuid(getuid());
	if (pw && pw->pw_name && *pw->pw_name)
		return pw->pw_name;
	name = getenv("USER");
	return name && *name ? name : "unknown";
}

/* The command line from the command on, for the audit: words with spaces are quoted. */
static void command_text(char *buf, size_t cap, int argc, char **argv)
{
	size_t o = 0;
	buf[0] = '\0';
	for (int i = 0; i < argc && o < cap; i++) {
		int quote = strpbrk(argv[i], " \t") != NULL || !argv[i][0];
		int n = snprintf(buf + o, cap - o, "%s%s%s%s", i ? " " : "", quote ? "\"" : "",
				 argv[i], quote ? "\"" : "");
		if (n < 0)
			break;
		o += (size_t)n;
	}
}

int main(int argc, char **argv)
{
	static struct options o;
	if (options_parse_redis_url(&o, "redis://127.0.0.1:6379") < 0)
		return 1;
	struct policy_tool t = {.prefix = "embargo", .why = "", .opts = &o};
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			fputs(USAGE, stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("embargo-policy %s\n", PACKAGE_VERSION);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "embargo-policy: %s needs a value\n", argv[i]);
			return 2;
		}
		if (strcmp(argv[i], "--redis") == 0) {
			if (options_parse_redis_url(&o, argv[++i]) < 0) {
				fprintf(stderr, "embargo-policy: --redis: expected "
						"redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], got '%s'\n",
					argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--redis-prefix") == 0) {
			t.prefix = argv[++i];
		} else if (strcmp(argv[i], "--by") == 0) {
			t.by = argv[++i];
		} else if (strcmp(argv[i], "--why") == 0) {
			t.why = argv[++i];
		} else {
			fprintf(stderr, "embargo-policy: unknown option '%s' (see --help)\n", argv[i]);
			return 2;
		}
	}
	if (!t.prefix[0] || strpbrk(t.prefix, " \t\r\n") || policy_tool_keys(&t) < 0) {
		fprintf(stderr, "embargo-policy: --redis-prefix: '%s' is empty, too long or has "
				"white space\n", t.prefix);
		return 2;
	}
	if (i >= argc) {
		fputs(USAGE, stderr);
		return 2;
	}
	const struct command *cmd = NULL;
	for (size_t k = 0; k < sizeof(COMMANDS) / sizeof(COMMANDS[0]); k++)
		if (strcmp(argv[i], COMMANDS[k].name) == 0)
			cmd = &COMMANDS[k];
	if (!cmd) {
		fprintf(stderr, "embargo-policy: unknown command '%s' (see --help)\n", argv[i]);
		return 2;
	}
	if (!t.by)
		t.by = login_name();
	command_text(t.command, sizeof(t.command), argc - i, argv + i);
	int status = cmd->run(&t, argc - i - 1, argv + i + 1);
	redisFree(t.rc);
	return status;
}
