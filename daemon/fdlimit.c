#include "fdlimit.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "log.h"

uint64_t fdlimit_raise(uint64_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl)) {
		log_warning("descriptors: cannot read RLIMIT_NOFILE: %s", strerror(errno));
		return 0;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl)) {
			log_warning("descriptors: cannot raise the soft limit %llu to %llu: %s",
				    (unsigned long long)was, (unsigned long long)rl.rlim_max,
				    strerror(errno));
			rl.rlim_cur = was;
		} else {
			log_info("descriptors: raised the soft limit from %llu to %llu",
				 (unsigned long long)was, (unsigned long long)rl.rlim_cur);
		}
	}
	if ((uint64_t)rl.rlim_cur < need)
		log_warning("descriptors: the limit is %llu, below the %llu that max_clients "
			    "and the workers may need: on ipc:// a connection beyond it aborts "
			    "the daemon inside libzmq; raise LimitNOFILE or ulimit -n",
			    (unsigned long long)rl.rlim_cur, (unsigned long long)need);
	return (uint64_t)rl.rlim_cur;
}
