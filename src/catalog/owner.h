/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The catalog's sidecar file, <path>-kvbm, beside the -wal and -shm files.
 * It does three jobs no SQLite file can do for itself:
 *  - ownership: one writer per (file, tier), by an open-file-description
 *    lock on the tier's slot, which the kernel drops when its holder dies,
 *    so a crashed owner never blocks a restart; the slot names the holder
 *    (pid, host, incarnation) for the refusal message. Readers never lock.
 *  - identity: the catalog id of the file it belongs to, so a database or
 *    WAL copied in from another catalog is refused instead of restored.
 *  - ballast: space set aside while the disk has it, given back when a
 *    commit fails for lack of space, so the writer can still record
 *    reclaims (and allocation can go on) on a full disk.
 */
#ifndef KVBM_CATALOG_OWNER_H
#define KVBM_CATALOG_OWNER_H

#include <stdbool.h>
#include <stdint.h>

#include "kvbm.h"

struct kvbm_manager;

#define KVBM__BALLAST_BYTES (4u << 20)

struct kvbm__owner {
	int fd;          /* -1 when not open */
	int64_t slot;    /* locked slot, -1 for none */
	bool ballast;    /* the ballast is allocated */
	bool adopt;      /* the file names no catalog yet: write id once committed */
	int64_t id;
};

/* Open (or create) the sidecar of path and check it belongs to the catalog
 * whose id is catalog_id: a sidecar naming another id refuses the open
 * (KVBM_E_CORRUPT); a new or empty one, or one left beside a catalog file
 * that was deleted (new_file: the open found it missing or empty), is
 * adopted by kvbm__owner_adopt. */
kvbm_status kvbm__owner_open(struct kvbm__owner *o, struct kvbm_manager *mgr, const char *path,
			     int64_t catalog_id, bool new_file);
/* After the open committed: record the catalog id in a new lock file. */
kvbm_status kvbm__owner_adopt(struct kvbm__owner *o, struct kvbm_manager *mgr, const char *path);
/* Take tier_id's slot for this process, or KVBM_E_BUSY naming its holder. */
kvbm_status kvbm__owner_lock(struct kvbm__owner *o, struct kvbm_manager *mgr, const char *path,
			     const char *tier, int64_t tier_id, uint64_t incarnation);
/* Give the ballast back (a commit failed for lack of space); true if there
 * was any. */
bool kvbm__owner_release_ballast(struct kvbm__owner *o);
/* Set the ballast aside again if the disk has room; false if it has not. */
bool kvbm__owner_restore_ballast(struct kvbm__owner *o);
/* Drop the lock and close; a no-op when not open. */
void kvbm__owner_close(struct kvbm__owner *o);

#endif /* KVBM_CATALOG_OWNER_H */
