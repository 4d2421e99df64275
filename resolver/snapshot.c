/* Snapshot file I/O around codec_encode()/codec_decode(). */
#include "config.h"

#include "resolver/snapshot.h"

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

int snapshot_write_file(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
	char tmp[4096], dir[4096];
	int fd = -1, rc;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
		snprintf(err, errlen, "path too long: %s", path);
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return rc;
	}
	rc = write_all(fd, text, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-rc));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto fail;
	}
	/* The rename itself must survive a crash: sync the directory entry. */
	snprintf(dir, sizeof(dir), "%s", path);
	int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	unlink(tmp);
	return rc;
}

int snapshot_save(const char *path, const policy_t *p, const struct codec_meta *meta, char *err,
		  size_t errlen)
{
	char *text = NULL;
	size_t len;
	int rc = codec_encode(p, meta, &text, &len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot encode the policy: %s", strerror(-rc));
		return rc;
	}
	rc = snapshot_write_file(path, text, len, err, errlen);
	free(text);
	return rc;
}

int snapshot_load(const char *path, policy_t **out, struct codec_meta *meta, char *err,
		  size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return rc;
	}
	struct stat st;
	char *text = NULL;
	int rc = 0;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto done;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		rc = -ENOMEM;
		goto done;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EBADMSG;
			goto done;
		}
		got += (size_t)r;
	}
	rc = codec_decode(text, got, out, meta);
done:
	if (rc == -EPROTONOSUPPORT)
		snprintf(err, errlen, "%s has snapshot format %u, this embargo reads %d and %d", path,
			 meta->format, 1, CODEC_FORMAT);
	else if (rc == -EBADMSG)
		snprintf(err, errlen, "%s is corrupt or truncated (checksum, count or format mismatch)",
			 path);
	else if (rc < 0)
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
	free(text);
	close(fd);
	return rc;
}
