/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A SQLite VFS shim for fault-injection tests. It wraps the platform VFS,
 * becomes the default one (so the library's connections use it without
 * knowing), and fails operations on command: opens, writes (disk full or an
 * I/O error, optionally after a byte budget) and syncs. Knobs are atomics
 * because the catalog writer thread reads them while the test sets them.
 * Test-only: it is process-global, as SQLite's VFS list is.
 */
#ifndef KVBM_FAULT_VFS_H
#define KVBM_FAULT_VFS_H

#include <stdint.h>

/* Register the shim as the default VFS (idempotent). 0 on success. */
int fault_vfs_install(void);

/* SQLite result code for failed xOpen of main db / WAL files; 0 = none. */
void fault_vfs_fail_open(int rc);
/* Fail xWrite with rc once budget more bytes were written (budget 0: the
 * next write fails); rc 0 turns write faults off. */
void fault_vfs_fail_writes(int rc, int64_t budget);
/* Fail xSync with rc; 0 = off. */
void fault_vfs_fail_sync(int rc);
/* Turn every fault off. */
void fault_vfs_reset(void);
/* Faults injected since install. */
uint64_t fault_vfs_injected(void);

#endif
