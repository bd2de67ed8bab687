/* SPDX-License-Identifier: Apache-2.0 */
#include "fault_vfs.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <string.h>

struct fault_file {
	sqlite3_file base; /* must be first: SQLite sees this */
	sqlite3_file *real; /* follows this struct in the same allocation */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs shim;
static struct sqlite3_io_methods shim_io;
static atomic_int open_rc;
static atomic_int write_rc;
static atomic_llong write_budget;
static atomic_int sync_rc;
static atomic_ullong injected;

static sqlite3_file *real_of(sqlite3_file *f)
{
	return ((struct fault_file *)f)->real;
}

static int f_close(sqlite3_file *f)
{
	return real_of(f)->pMethods->xClose(real_of(f));
}

static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	return real_of(f)->pMethods->xRead(real_of(f), buf, n, off);
}

static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	const int rc = atomic_load(&write_rc);

	/* The budget counts down; the write that would overdraw it fails, as
	 * a filesystem that runs out of space mid-transaction does. */
	if (rc && atomic_fetch_sub(&write_budget, n) < n) {
		atomic_fetch_add(&injected, 1);
		return rc;
	}
	return real_of(f)->pMethods->xWrite(real_of(f), buf, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return real_of(f)->pMethods->xTruncate(real_of(f), size);
}

static int f_sync(sqlite3_file *f, int flags)
{
	const int rc = atomic_load(&sync_rc);

	if (rc) {
		atomic_fetch_add(&injected, 1);
		return rc;
	}
	return real_of(f)->pMethods->xSync(real_of(f), flags);
}

static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return real_of(f)->pMethods->xFileSize(real_of(f), size);
}

static int f_lock(sqlite3_file *f, int level)
{
	return real_of(f)->pMethods->xLock(real_of(f), level);
}

static int f_unlock(sqlite3_file *f, int level)
{
	return real_of(f)->pMethods->xUnlock(real_of(f), level);
}

static int f_check_lock(sqlite3_file *f, int *out)
{
	return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int f_control(sqlite3_file *f, int op, void *arg)
{
	return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

static int f_sector(sqlite3_file *f)
{
	return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int f_device(sqlite3_file *f)
{
	return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

static int f_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
	return real_of(f)->pMethods->xShmMap(real_of(f), pg, pgsz, extend, pp);
}

static int f_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}

static void f_shm_barrier(sqlite3_file *f)
{
	real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int f_shm_unmap(sqlite3_file *f, int del)
{
	return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	return real_of(f)->pMethods->xFetch(real_of(f), off, n, pp);
}

static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
		     int *out_flags)
{
	struct fault_file *ff = (struct fault_file *)file;
	const int rc = atomic_load(&open_rc);

	(void)vfs;
	memset(ff, 0, sizeof(*ff));
	if (rc && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL))) {
		atomic_fetch_add(&injected, 1);
		return rc;
	}
	ff->real = (sqlite3_file *)(ff + 1);
	const int real_rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
	if (ff->real->pMethods == NULL)
		return real_rc; /* nothing opened: SQLite will not call xClose */
	ff->base.pMethods = &shim_io;
	return real_rc;
}

static int shim_delete(sqlite3_vfs *v, const char *name, int sync)
{
	(void)v;
	return real_vfs->xDelete(real_vfs, name, sync);
}

static int shim_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	(void)v;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int shim_full_path(sqlite3_vfs *v, const char *name, int n, char *out)
{
	(void)v;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static int shim_random(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int shim_sleep(sqlite3_vfs *v, int us)
{
	(void)v;
	return real_vfs->xSleep(real_vfs, us);
}

static int shim_time(sqlite3_vfs *v, sqlite3_int64 *out)
{
	(void)v;
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static int shim_last_error(sqlite3_vfs *v, int n, char *out)
{
	(void)v;
	return real_vfs->xGetLastError(real_vfs, n, out);
}

int fault_vfs_install(void)
{
	if (real_vfs)
		return 0;
	if (sqlite3_initialize() != SQLITE_OK || !(real_vfs = sqlite3_vfs_find(NULL)))
		return -1;
	shim_io = (struct sqlite3_io_methods){
		.iVersion = 3,
		.xClose = f_close,
		.xRead = f_read,
		.xWrite = f_write,
		.xTruncate = f_truncate,
		.xSync = f_sync,
		.xFileSize = f_size,
		.xLock = f_lock,
		.xUnlock = f_unlock,
		.xCheckReservedLock = f_check_lock,
		.xFileControl = f_control,
		.xSectorSize = f_sector,
		.xDeviceCharacteristics = f_device,
		.xShmMap = f_shm_map,
		.xShmLock = f_shm_lock,
		.xShmBarrier = f_shm_barrier,
		.xShmUnmap = f_shm_unmap,
		.xFetch = f_fetch,
		.xUnfetch = f_unfetch,
	};
	shim = (sqlite3_vfs){
		.iVersion = 2,
		.szOsFile = (int)sizeof(struct fault_file) + real_vfs->szOsFile,
		.mxPathname = real_vfs->mxPathname,
		.zName = "kvbm-fault",
		.xOpen = shim_open,
		.xDelete = shim_delete,
		.xAccess = shim_access,
		.xFullPathname = shim_full_path,
		.xRandomness = shim_random,
		.xSleep = shim_sleep,
		.xCurrentTimeInt64 = shim_time,
		.xGetLastError = shim_last_error,
	};
	return sqlite3_vfs_register(&shim, 1) == SQLITE_OK ? 0 : -1;
}

void fault_vfs_fail_open(int rc)
{
	atomic_store(&open_rc, rc);
}

void fault_vfs_fail_writes(int rc, int64_t budget)
{
	atomic_store(&write_budget, budget);
	atomic_store(&write_rc, rc);
}

void fault_vfs_fail_sync(int rc)
{
	atomic_store(&sync_rc, rc);
}

void fault_vfs_reset(void)
{
	fault_vfs_fail_open(0);
	fault_vfs_fail_writes(0, 0);
	fault_vfs_fail_sync(0);
}

uint64_t fault_vfs_injected(void)
{
	return atomic_load(&injected);
}
