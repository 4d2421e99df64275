/* Snapshot file I/O around codec_encode()/codec_decode(). It blocks on the disk (fsync), so it
 * must never run on a worker; it never talks to Redis or publishes a policy. */
#include "config.h"

#include "resolver/sync/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const char *bytes, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, bytes, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		bytes += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Write text to a new temporary file beside path and sync it: its name into tmp. */
static int write_temp(const char *path, const char *text, size_t len, char *tmp, size_t tmpcap,
		      char *err, size_t errlen)
{
	if ((size_t)snprintf(tmp, tmpcap, "%s.tmp.%ld", path, (long)getpid()) >= tmpcap) {
		snprintf(err, errlen, "path too long: %s", path);
		return -ENAMETOOLONG;
	}
	/* A file left by an earlier process with this pid is ours to replace; a link planted
	 * there is not followed. */
	(void)unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return rc;
	}
	int rc = write_all(fd, text, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-rc));
		unlink(tmp);
	}
	return rc;
}

/* Rename tmp over path and sync the directory, so that the rename survives a crash. */
static int commit_temp(const char *tmp, const char *path, char *err, size_t errlen)
{
	if (rename(tmp, path) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		return rc;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

int snapshot_write_file(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
	char tmp[4096];
	int rc = write_temp(path, text, len, tmp, sizeof(tmp), err, errlen);
	return rc < 0 ? rc : commit_temp(tmp, path, err, errlen);
}

/* Read the whole file at path into *text (owned, NUL-terminated) and *len. */
static int read_file(const char *path, char **text, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	char *buf = NULL;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto done;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto done;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto done;
		}
		if (r == 0)
			break; /* Shorter than fstat said: read what is there. */
		got += (size_t)r;
	}
	buf[got] = '\0';
	*text = buf;
	*len = got;
	buf = NULL;
done:
	free(buf);
	close(fd);
	return rc;
}

int snapshot_peek(const char *path, struct codec_meta *meta)
{
	char head[600];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, head, sizeof(head) - 1);
	close(fd);
	if (n <= 0)
		return -EBADMSG;
	char *nl = memchr(head, '\n', (size_t)n);
	if (!nl)
		return -EBADMSG;
	nl[1] = '\0';
	/* The header alone, with no body: its checksum fails, but salvage reads its meta. */
	policy_t *p = NULL;
	size_t kept, dropped;
	int rc = codec_salvage(head, (size_t)(nl + 1 - head), &p, meta, &kept, &dropped);
	policy_free(p);
	if (rc < 0)
		return rc;
	return meta->prefix[0] ? 0 : -EBADMSG;
}

/* PATH.N, the Nth older generation. */
static void generation(const char *path, int n, char *buf, size_t cap)
{
	if (n == 0)
		snprintf(buf, cap, "%s", path);
	else
		snprintf(buf, cap, "%s.%d", path, n);
}

int snapshot_save(const char *path, const policy_t *p, const struct codec_meta *meta, char *err,
		  size_t errlen)
{
	/* Never over another list's snapshot: a mistyped prefix or database must not replace the
	 * only copy of the real list. */
	struct codec_meta was;
	char gen[4200];
	for (int g = 0; g < SNAPSHOT_GENERATIONS; g++) {
		/* The older generations too: with PATH gone or unreadable, two saves would rotate
		 * the real list's copies away. */
		generation(path, g, gen, sizeof(gen));
		if (snapshot_peek(gen, &was) == 0 &&
		    (strcmp(was.prefix, meta->prefix) != 0 || was.db != meta->db)) {
			snprintf(err, errlen, "%s holds the policy of redis prefix '%s' db %d, not '%s' "
				 "db %d: not overwritten (move it away, or give this instance its own "
				 "--snapshot)", gen, was.prefix, was.db, meta->prefix, meta->db);
			return -EEXIST;
		}
	}
	char *text = NULL;
	size_t len;
	int rc = codec_encode(p, meta, &text, &len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot encode the policy: %s", strerror(-rc));
		return rc;
	}
	/* The new file is written and synced first: a save that fails leaves the generations as
	 * they were. Then the older generations move down (PATH.2 to PATH.3, PATH.1 to PATH.2, PATH
	 * linked as PATH.1), so that PATH itself always exists and a damaged newest file has an intact
	 * predecessor, and the new file takes PATH's place. */
	char tmp[4096], older[4200], newer[4200];
	rc = write_temp(path, text, len, tmp, sizeof(tmp), err, errlen);
	free(text);
	if (rc < 0)
		return rc;
	for (int g = SNAPSHOT_GENERATIONS - 1; g > 0; g--) {
		generation(path, g, older, sizeof(older));
		generation(path, g - 1, newer, sizeof(newer));
		if (g > 1)
			(void)rename(newer, older);
		else if (link(newer, older) < 0 && errno == EEXIST && unlink(older) == 0)
			(void)link(newer, older);
	}
	return commit_temp(tmp, path, err, errlen);
}

int snapshot_load(const char *path, policy_t **out, struct codec_meta *meta, char *err,
		  size_t errlen)
{
	char *text = NULL;
	size_t got = 0;
	int rc = read_file(path, &text, &got);
	if (rc < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
		return rc;
	}
	rc = codec_decode(text, got, out, meta);
	if (rc == -EPROTONOSUPPORT)
		snprintf(err, errlen, "%s has snapshot format %u, this embargo reads %d to %d", path,
			 meta->format, 1, CODEC_FORMAT);
	else if (rc == -EBADMSG)
		snprintf(err, errlen, "%s is corrupt or truncated (checksum, count or format mismatch)",
			 path);
	else if (rc < 0)
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
	free(text);
	return rc;
}

int snapshot_load_any(const char *path, const policy_t *extra, policy_t **out,
		      struct codec_meta *meta, char *note, size_t notelen)
{
	char err[600], gen[4200];
	note[0] = '\0';
	int rc = snapshot_load(path, out, meta, err, sizeof(err));
	/* A format this embargo does not read (a damaged digit, or a newer embargo's file) is
	 * treated like damage: its older generations, or what reads of it with the bundled list. */
	if (rc < 0 && rc != -ENOENT && rc != -ENOMEM)
		rc = -EBADMSG; /* Unreadable (EACCES, EIO...) is handled like damage too. */
	if (rc == 0 || (rc != -EBADMSG && rc != -ENOENT)) {
		if (rc < 0)
			snprintf(note, notelen, "%s", err);
		return rc;
	}
	int newest = rc;
	/* The first intact older generation. */
	policy_t *intact = NULL;
	struct codec_meta imeta = {0};
	int found = 0;
	for (int g = 1; g < SNAPSHOT_GENERATIONS && !intact; g++) {
		generation(path, g, gen, sizeof(gen));
		if (snapshot_load(gen, &intact, &imeta, err, sizeof(err)) == 0)
			found = g;
	}
	if (newest == -ENOENT) {
		if (!intact) {
			snprintf(note, notelen, "no policy snapshot at %s", path);
			return -ENOENT;
		}
		snprintf(note, notelen, "%s is missing: enforcing the older generation %s.%d",
			 path, path, found);
		*out = intact;
		*meta = imeta;
		return SNAPSHOT_OLDER;
	}
	/* Damaged: what can still be read of it, with the older generation (or the bundled list
	 * when there is none); deny rules read from damaged bytes can only over-block. */
	char *text = NULL;
	size_t len = 0, kept = 0, dropped = 0;
	policy_t *salvaged = NULL;
	struct codec_meta smeta = {0};
	rc = read_file(path, &text, &len);
	if (rc == 0)
		rc = codec_salvage(text, len, &salvaged, &smeta, &kept, &dropped);
	free(text);
	if (rc < 0) {
		policy_free(intact);
		snprintf(note, notelen, "%s is damaged and cannot be read: %s", path, strerror(-rc));
		return rc;
	}
	*out = codec_recover(salvaged, intact, intact ? NULL : extra);
	policy_free(salvaged);
	if (!*out) {
		policy_free(intact);
		snprintf(note, notelen, "out of memory recovering %s", path);
		return -ENOMEM;
	}
	*meta = smeta.prefix[0] ? smeta : imeta;
	if (intact)
		snprintf(note, notelen, "%s is damaged: enforcing the %zu rules still readable in it "
			 "(%zu lines dropped) with the older generation %s.%d (%zu deny rules); allow "
			 "rules only where both agree", path, kept, dropped, path, found,
			 policy_stats(intact)->deny);
	else
		snprintf(note, notelen, "%s is damaged and has no intact older generation: enforcing "
			 "the %zu rules still readable in it (%zu lines dropped) with the bundled list, "
			 "and no allow rule", path, kept, dropped);
	policy_free(intact);
	return SNAPSHOT_RECOVERED;
}
