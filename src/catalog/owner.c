/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sidecar file <path>-kvbm (owner.h). Layout:
 *   [0, 64)              "kvbm-catalog <catalog id, 16 hex digits>\n"
 *   4096 + 256 * slot    the holder of tier slot `slot` (tier_id mod 1024),
 *                        one text line, locked while held
 *   [1 MiB, 1 MiB + 4 MiB) the ballast, allocated while the disk has room
 * Locks are open-file-description locks (F_OFD_SETLK): per open of the
 * file, not per process, so two managers in one process exclude each other
 * too, and the kernel releases them when the descriptor's last holder dies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "manager.h"
#include "owner.h"

#define HEADER_BYTES 64
#define SLOTS 1024
#define SLOT_BYTES 256
#define SLOT_BASE 4096
#define BALLAST_AT (1 << 20)

static void sidecar_path(char *out, size_t len, const char *path)
{
	snprintf(out, len, "%s-kvbm", path);
}

kvbm_status kvbm__owner_open(struct kvbm__owner *o, kvbm_manager *mgr, const char *path,
			     int64_t catalog_id, bool new_file)
{
	char name[4200], header[HEADER_BYTES + 1];
	struct stat sb;

	o->fd = -1;
	o->slot = -1;
	o->ballast = false;
	sidecar_path(name, sizeof(name), path);
	/* O_NOFOLLOW: the sidecar is ours to create, never a link to elsewhere. */
	const int fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return kvbm__fail(mgr, errno == EROFS || errno == EACCES ? KVBM_E_READONLY : KVBM_E_IO,
				  "catalog %s: cannot open its lock file %s: %s", path, name,
				  strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return kvbm__fail(mgr, KVBM_E_CORRUPT, "catalog %s: %s is not a regular file", path,
				  name);
	}
	const ssize_t got = pread(fd, header, HEADER_BYTES, 0);
	header[got > 0 ? got : 0] = '\0';
	if (got > 0 && header[0] != '\0' && !new_file) {
		unsigned long long id = 0;
		if (sscanf(header, "kvbm-catalog %16llx", &id) != 1 || (int64_t)id != catalog_id) {
			close(fd);
			return kvbm__fail(mgr, KVBM_E_CORRUPT,
					  "catalog %s holds catalog %016llx but its lock file %s "
					  "belongs to %s; was a database or -wal file copied in from "
					  "another catalog? (remove %s to adopt the file as it is)",
					  path, (unsigned long long)catalog_id, name,
					  id ? "another catalog" : "no kvbm catalog", name);
		}
	} else {
		/* Written once the open commits (kvbm__owner_adopt): an open
		 * that fails before may leave a file whose id is not final. */
		o->adopt = true;
	}
	o->id = catalog_id;
	o->fd = fd;
	/* Set space aside now, while the disk may still have it. */
	kvbm__owner_restore_ballast(o);
	return KVBM_OK;
}

kvbm_status kvbm__owner_lock(struct kvbm__owner *o, kvbm_manager *mgr, const char *path,
			     const char *tier, int64_t tier_id, uint64_t incarnation)
{
	const int64_t slot = tier_id % SLOTS;
	const off_t at = SLOT_BASE + (off_t)slot * SLOT_BYTES;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at,
			   .l_len = SLOT_BYTES};
	char line[SLOT_BYTES], host[64] = "?";

	if (fcntl(o->fd, F_OFD_SETLK, &fl) != 0) {
		if (errno != EAGAIN && errno != EACCES)
			return kvbm__fail(mgr, KVBM_E_IO, "catalog %s: cannot lock tier %s: %s", path,
					  tier, strerror(errno));
		const ssize_t got = pread(o->fd, line, sizeof(line) - 1, at);
		line[got > 0 ? got : 0] = '\0';
		line[strcspn(line, "\n")] = '\0';
		return kvbm__fail(mgr, KVBM_E_BUSY,
				  "catalog %s tier %s is owned by another writer (%s); one writer per "
				  "tier: close it first, or give this manager another tier",
				  path, tier, line[0] ? line : "holder unknown");
	}
	o->slot = slot;
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	memset(line, 0, sizeof(line));
	const time_t now = time(NULL);
	struct tm tm;
	char since[32] = "";
	if (gmtime_r(&now, &tm))
		strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(line, sizeof(line), "pid %ld on %s, incarnation %llu, since %s\n", (long)getpid(),
		 host, (unsigned long long)incarnation, since);
	/* The holder line is for messages only: failing to write it is fine. */
	if (pwrite(o->fd, line, sizeof(line), at) != (ssize_t)sizeof(line))
		(void)0;
	return KVBM_OK;
}

kvbm_status kvbm__owner_adopt(struct kvbm__owner *o, kvbm_manager *mgr, const char *path)
{
	char want[HEADER_BYTES];

	if (!o->adopt)
		return KVBM_OK;
	snprintf(want, sizeof(want), "kvbm-catalog %016llx\n", (unsigned long long)o->id);
	if (pwrite(o->fd, want, strlen(want), 0) != (ssize_t)strlen(want))
		return kvbm__fail(mgr, errno == ENOSPC ? KVBM_E_FULL : KVBM_E_IO,
				  "catalog %s: cannot write its lock file: %s", path, strerror(errno));
	o->adopt = false;
	return KVBM_OK;
}

bool kvbm__owner_release_ballast(struct kvbm__owner *o)
{
	if (o->fd < 0 || !o->ballast)
		return false;
	o->ballast = false;
	return ftruncate(o->fd, BALLAST_AT) == 0;
}

bool kvbm__owner_restore_ballast(struct kvbm__owner *o)
{
	if (o->fd < 0 || o->ballast)
		return o->ballast;
	if (posix_fallocate(o->fd, BALLAST_AT, KVBM__BALLAST_BYTES) != 0) {
		/* What was allocated of it would be lost to no one's use. */
		if (ftruncate(o->fd, BALLAST_AT) != 0)
			(void)0;
		return false;
	}
	o->ballast = true;
	return true;
}

void kvbm__owner_close(struct kvbm__owner *o)
{
	if (o->fd < 0)
		return;
	if (o->slot >= 0) {
		/* Clear the holder line so a later refusal cannot name us. */
		char blank[SLOT_BYTES] = {0};
		if (pwrite(o->fd, blank, sizeof(blank), SLOT_BASE + (off_t)o->slot * SLOT_BYTES) < 0)
			(void)0;
	}
	/* Closing the descriptor drops its locks. */
	close(o->fd);
	o->fd = -1;
	o->slot = -1;
}
