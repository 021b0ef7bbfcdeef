/*
 * tarindex.h — the offset index of one WebDataset tar shard: its tar
 * headers read one by one (ustar, GNU, pax; no decompression, no image
 * bytes), members grouped into samples, and the per-shard cache file
 * (shards.h has the rules).
 */
#ifndef CUTMIXD_TARINDEX_H
#define CUTMIXD_TARINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

enum problem {
	P_NOT_REGULAR, P_NO_IMAGE, P_NO_CLASS, P_BAD_CLASS, P_DUP_MEMBER,
	P_DUP_KEY, N_PROBLEMS
};

extern const char *const tar_problem_text[N_PROBLEMS];

struct rec {
	uint64_t off, size;
	int32_t label;
	uint32_t name_off;   /* "KEY.EXT" in the scan's arena */
	uint32_t key_len;
};

/* What one shard yields; also the content of its cache file. */
struct scan {
	struct rec *recs;
	size_t n, cap;
	char *names;
	size_t names_len, names_cap;
	uint64_t counts[N_PROBLEMS];
	char first[N_PROBLEMS][128];
	char end_note[256];  /* why the scan stopped early, "" if it did not */
};


/* pread until n bytes or EOF: bytes read, or -errno. */
ssize_t tar_pread(int fd, void *buf, size_t n, uint64_t off);

/*
 * Index the shard at path (from its cache when valid, else by scanning it
 * and writing the cache) into sc, with the shard's stat in *st. 0, or
 * -errno with a message in err (a compressed shard: -ENOTSUP).
 */
int tarindex_shard(const char *path, const char *cache_dir, struct scan *sc,
		   struct stat *st, bool *cached, char *err, size_t errlen);
void tarindex_free(struct scan *sc);

#endif
