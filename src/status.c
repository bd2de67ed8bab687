/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Status codes, their static descriptions, and the per-manager "last error"
 * message. Messages live in the manager, never in global or thread-local
 * storage; they are copied out under a lock so no caller ever holds a
 * pointer another thread can overwrite.
 */
#include <stdio.h>
#include <string.h>

#include "manager.h"

const char *kvbm_version(void)
{
	return KVBM_VERSION_STRING;
}

const char *kvbm_strerror(kvbm_status status)
{
	switch (status) {
	case KVBM_OK: return "ok";
	case KVBM_E_INVAL: return "invalid argument";
	case KVBM_E_NOMEM: return "out of memory";
	case KVBM_E_EXHAUSTED: return "not enough free or evictable blocks";
	case KVBM_E_SIZE: return "size mismatch";
	case KVBM_E_STALE: return "handle is stale";
	case KVBM_E_MISUSE: return "call not valid in this state";
	case KVBM_E_NOTFOUND: return "not found";
	case KVBM_E_IO: return "i/o error";
	case KVBM_E_CORRUPT: return "catalog is corrupt or not a catalog";
	case KVBM_E_BUSY: return "busy";
	case KVBM_E_READONLY: return "read-only";
	case KVBM_E_FULL: return "disk or database full";
	case KVBM_E_MISMATCH: return "catalog belongs to another configuration";
	case KVBM_E_UNSUPPORTED: return "not supported by this build";
	}
	return "unknown status";
}

kvbm_status kvbm__fail(kvbm_manager *mgr, kvbm_status code, const char *fmt, ...)
{
	va_list ap;

	if (!mgr)
		return code;
	pthread_mutex_lock(&mgr->err_lock);
	mgr->err_code = code;
	va_start(ap, fmt);
	vsnprintf(mgr->err_msg, sizeof(mgr->err_msg), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&mgr->err_lock);
	return code;
}

kvbm_status kvbm_last_error(kvbm_manager *mgr, kvbm_status *code, char *buf, size_t len)
{
	if (!mgr)
		return KVBM_E_INVAL;
	pthread_mutex_lock(&mgr->err_lock);
	if (code)
		*code = mgr->err_code;
	if (buf && len > 0)
		snprintf(buf, len, "%s", mgr->err_msg);
	pthread_mutex_unlock(&mgr->err_lock);
	return KVBM_OK;
}
