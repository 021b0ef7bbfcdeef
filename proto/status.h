/*
 * status.h — the one table of daemon status codes (the `status` of an
 * ERROR reply, PROTOCOL.md), as an X-macro:
 *
 *   X(NAME, code, client errno, English name)
 *
 * NAME is the enum suffix: WIRE_##NAME in wire.h, CUTMIXD_##NAME in
 * cutmixd.h (OK, E_MALFORMED, ...; Python: Status.MALFORMED, without E_).
 *
 * Everything that lists the codes is tied to it at compile time:
 * proto/wire.c builds wire_status_name() from it and checks enum
 * wire_status (wire.h) against it; client/c/client.c checks enum
 * cutmixd_status (cutmixd.h, the public header, which cannot include
 * this file) and maps codes to errnos from it. The Python client's Status
 * enum is tested against this file. A new code goes here first.
 */
#ifndef CUTMIXD_STATUS_H
#define CUTMIXD_STATUS_H

#include <errno.h>

#define WIRE_STATUS_TABLE(X)                                                              \
	X(OK,              0,  0,               "ok") \
	X(E_MALFORMED,     1,  EPROTO,          "malformed request") \
	X(E_VERSION,       2,  EPROTONOSUPPORT, "unsupported protocol version") \
	X(E_UNKNOWN_TYPE,  3,  EOPNOTSUPP,      "unknown request type") \
	X(E_NO_PIPELINE,   4,  ENOENT,          "unknown pipeline") \
	X(E_BAD_SHARD,     5,  EINVAL,          "bad shard (need world >= 1 and rank < world)") \
	X(E_BATCH_RANGE,   6,  ERANGE,          "batch index out of range") \
	X(E_BUSY,          7,  EBUSY,           "busy: too many outstanding requests") \
	X(E_NOT_EVAL,      8,  EPERM,           "not an eval pipeline") \
	X(E_DECODE,        9,  EIO,             "image decode failed") \
	X(E_INTERNAL,      10, EREMOTEIO,       "internal error") \
	X(E_SHUTTING_DOWN, 11, ESHUTDOWN,       "shutting down") \
	X(E_EPOCH_RANGE,   12, EDOM,            "epoch out of range")

/* What a client reports for a code it does not know. */
#define WIRE_STATUS_UNKNOWN_ERRNO EREMOTEIO

#endif
