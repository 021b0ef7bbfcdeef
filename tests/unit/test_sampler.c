/*
 * test_sampler.c — coverage, sharding, drop_last, determinism and the
 * permutation cache of sampler.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <cmocka.h>

#include "rng.h"
#include "sampler.h"

static const uint32_t test_ns[] = { 1, 2, 3, 7, 64, 100, 1001 };
static const uint32_t test_worlds[] = { 1, 2, 3, 4, 8 };
static const uint32_t test_batches[] = { 1, 3, 32, 128 };
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t test_key(void)
{
	return rng_key(1234, "train", 0, 0);
}

static sampler_t *make(uint32_t n, uint32_t bs, bool shuffle, bool drop_last)
{
	struct sampler_params p = {
		.n = n, .batch_size = bs, .shuffle = shuffle,
		.drop_last = drop_last, .key = test_key(),
	};
	sampler_t *s = sampler_new(&p);
	assert_non_null(s);
	return s;
}

/* What the rules in sampler.h predict. */
static uint32_t expect_shard(uint32_t n, uint32_t w, bool drop_last)
{
	return drop_last ? n / w : (n + w - 1) / w;
}

static uint32_t expect_batches(uint32_t n, uint32_t w, uint32_t bs, bool drop_last)
{
	uint32_t shard = expect_shard(n, w, drop_last);
	return drop_last ? shard / bs : (shard + bs - 1) / bs;
}

/*
 * Run every batch of every rank of one epoch; check sizes, pads and
 * coverage. Returns nothing; asserts.
 */
static void check_epoch(uint32_t n, uint32_t w, uint32_t bs, bool shuffle,
			bool drop_last, uint32_t epoch)
{
	sampler_t *s = make(n, bs, shuffle, drop_last);
	uint32_t *idx = malloc(bs * sizeof(*idx));
	uint8_t *pad = malloc(bs);
	uint32_t *seen = calloc(n, sizeof(*seen));
	uint32_t shard = expect_shard(n, w, drop_last);
	uint32_t nb = expect_batches(n, w, bs, drop_last);
	uint64_t real = 0, pads = 0;

	assert_non_null(idx);
	assert_non_null(pad);
	assert_non_null(seen);
	assert_int_equal(sampler_shard_size(s, w), shard);
	assert_int_equal(sampler_batches(s, w), nb);

	for (uint32_t r = 0; r < w; r++) {
		uint32_t got = 0;
		for (uint32_t b = 0; b < nb; b++) {
			memset(pad, 0xAA, bs);
			int c = sampler_batch(s, epoch, r, w, b, idx, pad);
			assert_true(c > 0 && (uint32_t)c <= bs);
			/* only the last batch may be short, and only without
			 * drop_last */
			if ((uint32_t)c < bs) {
				assert_false(drop_last);
				assert_int_equal(b, nb - 1);
			}
			for (int k = 0; k < c; k++) {
				assert_true(idx[k] < n);
				assert_true(pad[k] == 0 || pad[k] == 1);
				if (pad[k]) {
					pads++;
				} else {
					seen[idx[k]]++;
					real++;
				}
			}
			got += (uint32_t)c;
		}
		/* every rank yields the same number of samples */
		if (drop_last)
			assert_int_equal(got, (shard / bs) * bs);
		else
			assert_int_equal(got, shard);
		/* one past the end is an error */
		assert_int_equal(sampler_batch(s, epoch, r, w, nb, idx, pad), -EINVAL);
	}

	if (!drop_last) {
		for (uint32_t i = 0; i < n; i++)
			assert_int_equal(seen[i], 1);
		assert_int_equal(pads, (uint64_t)shard * w - n);
	} else {
		uint64_t used = (uint64_t)w * (shard / bs) * bs;
		for (uint32_t i = 0; i < n; i++)
			assert_true(seen[i] <= 1);
		assert_int_equal(pads, 0);
		assert_int_equal(real, used);
		/* dropped = the remainder of N/w plus each shard's tail */
		uint64_t dropped = (n - (uint64_t)shard * w) + (uint64_t)w * (shard % bs);
		assert_int_equal(n - real, dropped);
	}
	free(idx);
	free(pad);
	free(seen);
	sampler_destroy(&s);
	assert_null(s);
}

static void test_coverage(void **state)
{
	(void)state;
	for (size_t a = 0; a < LEN(test_ns); a++)
		for (size_t b = 0; b < LEN(test_worlds); b++)
			for (size_t c = 0; c < LEN(test_batches); c++)
				for (int sh = 0; sh < 2; sh++)
					for (int dl = 0; dl < 2; dl++)
						check_epoch(test_ns[a], test_worlds[b],
							    test_batches[c], sh, dl,
							    (uint32_t)(a + b + c));
}

/* Pads are wrapped duplicates from the start of the epoch order. */
static void test_pad_values(void **state)
{
	uint32_t idx[4];
	uint8_t pad[4];
	(void)state;

	/* n = 3, world = 8: positions 3..7 wrap to 0,1,2,0,1 */
	sampler_t *s = make(3, 4, false, false);
	assert_int_equal(sampler_shard_size(s, 8), 1);
	for (uint32_t r = 0; r < 8; r++) {
		assert_int_equal(sampler_batch(s, 0, r, 8, 0, idx, pad), 1);
		assert_int_equal(idx[0], r % 3);
		assert_int_equal(pad[0], r >= 3);
	}
	/* pad may be NULL */
	assert_int_equal(sampler_batch(s, 0, 7, 8, 0, idx, NULL), 1);
	assert_int_equal(idx[0], 1);
	sampler_destroy(&s);

	/* n = 10, world = 4, identity: rank 2 gets 2, 6, 0(pad) */
	s = make(10, 4, false, false);
	assert_int_equal(sampler_batch(s, 0, 2, 4, 0, idx, pad), 3);
	assert_int_equal(idx[0], 2);
	assert_int_equal(idx[1], 6);
	assert_int_equal(idx[2], 0);
	assert_int_equal(pad[0], 0);
	assert_int_equal(pad[1], 0);
	assert_int_equal(pad[2], 1);
	sampler_destroy(&s);

	/* drop_last with n = 10, world = 4, batch 2: shards of 2, no pads */
	s = make(10, 2, false, true);
	assert_int_equal(sampler_shard_size(s, 4), 2);
	assert_int_equal(sampler_batches(s, 4), 1);
	assert_int_equal(sampler_batch(s, 0, 3, 4, 0, idx, pad), 2);
	assert_int_equal(idx[0], 3);
	assert_int_equal(idx[1], 7);
	assert_int_equal(pad[0] | pad[1], 0);
	sampler_destroy(&s);
}

/* drop_last when a shard is shorter than one batch: no batches at all. */
static void test_drop_last_empty(void **state)
{
	uint32_t idx[8];
	(void)state;

	sampler_t *s = make(7, 8, true, true);
	assert_int_equal(sampler_batches(s, 1), 0);
	assert_int_equal(sampler_batch(s, 0, 0, 1, 0, idx, NULL), -EINVAL);
	assert_int_equal(sampler_shard_size(s, 8), 0);
	assert_int_equal(sampler_batches(s, 8), 0);
	sampler_destroy(&s);
}

static void test_determinism(void **state)
{
	enum { N = 1001, BS = 32, W = 3 };
	uint32_t a[BS], b[BS];
	uint8_t pa[BS], pb[BS];
	(void)state;

	sampler_t *s1 = make(N, BS, true, false);
	sampler_t *s2 = make(N, BS, true, false);
	uint32_t nb = sampler_batches(s1, W);

	/* same call twice */
	int c1 = sampler_batch(s1, 5, 1, W, 3, a, pa);
	int c2 = sampler_batch(s1, 5, 1, W, 3, b, pb);
	assert_int_equal(c1, c2);
	assert_memory_equal(a, b, sizeof(a[0]) * (size_t)c1);

	/* a fresh sampler asked in another order, with other epochs in between
	 * evicting the cache, gives the same batches */
	for (uint32_t e = 0; e < 4; e++)
		for (uint32_t r = 0; r < W; r++)
			for (uint32_t k = 0; k < nb; k++) {
				uint32_t kk = nb - 1 - k;
				c1 = sampler_batch(s1, e, r, W, k, a, pa);
				(void)sampler_batch(s2, e + 100, r, W, k, b, pb);
				(void)sampler_batch(s2, (e + 2) % 4, W - 1 - r, W, kk, b, pb);
				c2 = sampler_batch(s2, e, r, W, k, b, pb);
				assert_int_equal(c1, c2);
				assert_memory_equal(a, b, sizeof(a[0]) * (size_t)c1);
				assert_memory_equal(pa, pb, (size_t)c1);
			}
	sampler_destroy(&s1);
	sampler_destroy(&s2);
}

/* The permutation is exactly the documented one: shuffle of identity from
 * rng_init(key, epoch, 0, 0, RNG_PERMUTE, 0). With world 1 the batches are
 * the permutation in order. */
static void test_permutation_definition(void **state)
{
	enum { N = 100, BS = 7 };
	uint32_t perm[N], got[N + BS];
	rng_t r;
	(void)state;

	for (uint32_t e = 0; e < 3; e++) {
		for (uint32_t i = 0; i < N; i++)
			perm[i] = i;
		rng_init(&r, test_key(), e, 0, 0, RNG_PERMUTE, 0);
		rng_shuffle_u32(&r, perm, N);

		sampler_t *s = make(N, BS, true, false);
		uint32_t off = 0;
		for (uint32_t b = 0; b < sampler_batches(s, 1); b++) {
			int c = sampler_batch(s, e, 0, 1, b, got + off, NULL);
			assert_true(c > 0);
			off += (uint32_t)c;
		}
		assert_int_equal(off, N);
		assert_memory_equal(got, perm, sizeof(perm));
		sampler_destroy(&s);
	}
}

/* Epochs differ with shuffle, are identical without. */
static void test_epochs(void **state)
{
	enum { N = 64 };
	uint32_t a[N], b[N];
	(void)state;

	sampler_t *s = make(N, N, true, false);
	assert_int_equal(sampler_batch(s, 0, 0, 1, 0, a, NULL), N);
	for (uint32_t e = 1; e < 10; e++) {
		assert_int_equal(sampler_batch(s, e, 0, 1, 0, b, NULL), N);
		assert_memory_not_equal(a, b, sizeof(a));
	}
	sampler_destroy(&s);

	s = make(N, N, false, false);
	assert_int_equal(sampler_batch(s, 0, 0, 1, 0, a, NULL), N);
	for (uint32_t i = 0; i < N; i++)
		assert_int_equal(a[i], i);
	assert_int_equal(sampler_batch(s, 9, 0, 1, 0, b, NULL), N);
	assert_memory_equal(a, b, sizeof(a));
	sampler_destroy(&s);

	/* a different key gives a different order */
	struct sampler_params p = { .n = N, .batch_size = N, .shuffle = true,
				    .key = rng_key(1235, "train", 0, 0) };
	s = sampler_new(&p);
	assert_non_null(s);
	sampler_t *s0 = make(N, N, true, false);
	assert_int_equal(sampler_batch(s, 0, 0, 1, 0, a, NULL), N);
	assert_int_equal(sampler_batch(s0, 0, 0, 1, 0, b, NULL), N);
	assert_memory_not_equal(a, b, sizeof(a));
	sampler_destroy(&s);
	sampler_destroy(&s0);
}

/* Ranks agree on the permutation: rank r's k-th sample is the
 * (k*w + r)-th element of the world-1 order, for every world. */
static void test_ranks_agree(void **state)
{
	enum { N = 1001, BS = 16 };
	uint32_t order[N], buf[BS];
	(void)state;

	sampler_t *s = make(N, N, true, false);
	assert_int_equal(sampler_batch(s, 3, 0, 1, 0, order, NULL), N);
	sampler_destroy(&s);

	for (size_t wi = 0; wi < LEN(test_worlds); wi++) {
		uint32_t w = test_worlds[wi];
		/* each rank in its own sampler, as on separate machines */
		for (uint32_t r = 0; r < w; r++) {
			sampler_t *sr = make(N, BS, true, false);
			uint32_t k = 0;
			for (uint32_t b = 0; b < sampler_batches(sr, w); b++) {
				int c = sampler_batch(sr, 3, r, w, b, buf, NULL);
				for (int j = 0; j < c; j++, k++)
					assert_int_equal(buf[j], order[((uint64_t)k * w + r) % N]);
			}
			sampler_destroy(&sr);
		}
	}
}

static void test_errors(void **state)
{
	uint32_t idx[4];
	struct sampler_params p = { .n = 10, .batch_size = 4, .shuffle = true, .key = 1 };
	(void)state;

	sampler_t *s = sampler_new(&p);
	assert_non_null(s);
	assert_int_equal(sampler_batch(s, 0, 2, 2, 0, idx, NULL), -EINVAL);
	assert_int_equal(sampler_batch(s, 0, 5, 2, 0, idx, NULL), -EINVAL);
	assert_int_equal(sampler_batch(s, 0, 0, 0, 0, idx, NULL), -EINVAL);
	assert_int_equal(sampler_batches(s, 2), 2);
	assert_int_equal(sampler_batch(s, 0, 1, 2, 2, idx, NULL), -EINVAL);
	assert_int_equal(sampler_batch(s, 0, 1, 2, UINT32_MAX, idx, NULL), -EINVAL);
	assert_int_equal(sampler_batch(s, 0, 1, 2, 1, idx, NULL), 1);
	assert_int_equal(sampler_shard_size(s, 0), 0);
	assert_int_equal(sampler_batches(s, 0), 0);
	sampler_destroy(&s);
	assert_null(s);
	sampler_destroy(&s); /* idempotent */
	sampler_destroy(NULL);

	p.n = 0;
	assert_null(sampler_new(&p));
	p.n = 10;
	p.batch_size = 0;
	assert_null(sampler_new(&p));
	assert_null(sampler_new(NULL));
}

/* Arithmetic near the limits: n = 2^31 - 1, world = 2^16, no shuffle (so
 * nothing is allocated). */
static void test_large(void **state)
{
	uint32_t idx[128];
	uint8_t pad[128];
	const uint32_t n = 0x7FFFFFFFu, w = 1u << 16, bs = 128;
	(void)state;

	sampler_t *s = make(n, bs, false, false);
	uint32_t shard = sampler_shard_size(s, w);
	assert_int_equal(shard, (uint32_t)(((uint64_t)n + w - 1) / w));
	uint32_t nb = sampler_batches(s, w);
	assert_int_equal(nb, (shard + bs - 1) / bs);
	int c = sampler_batch(s, 0, w - 1, w, nb - 1, idx, pad);
	assert_int_equal(c, shard - (nb - 1) * bs);
	/* the very last shard position of the last rank wraps */
	uint64_t q = (uint64_t)(shard - 1) * w + (w - 1);
	assert_int_equal(idx[c - 1], (uint32_t)(q % n));
	assert_int_equal(pad[c - 1], q >= n);
	sampler_destroy(&s);

	/* 2^32 - 1 samples with world 1 */
	s = make(UINT32_MAX, bs, false, true);
	assert_int_equal(sampler_shard_size(s, 1), UINT32_MAX);
	assert_int_equal(sampler_batches(s, 1), UINT32_MAX / bs);
	c = sampler_batch(s, 0, 0, 1, UINT32_MAX / bs - 1, idx, pad);
	assert_int_equal(c, bs);
	assert_int_equal(idx[bs - 1], (UINT32_MAX / bs) * bs - 1);
	sampler_destroy(&s);
}

struct thread_arg {
	sampler_t *s;
	uint32_t id;
	uint64_t sum; /* checksum of everything this thread saw */
};

static void *hammer(void *p)
{
	struct thread_arg *a = p;
	uint32_t idx[32];

	for (uint32_t i = 0; i < 3000; i++) {
		/* more epochs than the cache's 8 slots */
		uint32_t epoch = (i + a->id) % 11, batch = (i * 7) % 32;
		int c = sampler_batch(a->s, epoch, 0, 1, batch, idx, NULL);
		if (c != 32)
			return (void *)1;
		for (int k = 0; k < c; k++)
			a->sum += (uint64_t)idx[k] * (epoch + 1) * (batch + 1) * (k + 1);
	}
	return NULL;
}

/* Concurrent callers on different epochs (constant cache churn) see the
 * same batches as a single thread. Asserts run on the main thread. */
static void test_threads(void **state)
{
	enum { T = 4 };
	pthread_t th[T];
	struct thread_arg arg[T], ref[T];
	(void)state;

	sampler_t *s = make(1024, 32, true, false);
	for (uint32_t t = 0; t < T; t++) {
		arg[t] = (struct thread_arg){ .s = s, .id = t };
		assert_int_equal(pthread_create(&th[t], NULL, hammer, &arg[t]), 0);
	}
	for (uint32_t t = 0; t < T; t++) {
		void *rv;
		assert_int_equal(pthread_join(th[t], &rv), 0);
		assert_null(rv);
	}
	sampler_t *s1 = make(1024, 32, true, false);
	for (uint32_t t = 0; t < T; t++) {
		ref[t] = (struct thread_arg){ .s = s1, .id = t };
		assert_null(hammer(&ref[t]));
		assert_true(ref[t].sum == arg[t].sum);
	}
	sampler_destroy(&s);
	sampler_destroy(&s1);
}

/* The cache holds as many permutations as fit in SAMPLER_CACHE_BYTES,
 * 2..SAMPLER_CACHE_MAX: a 4M dataset keeps 4 epochs. */
static void test_cache_slots(void **state)
{
	(void)state;
	assert_int_equal(sampler_cache_slots(1), SAMPLER_CACHE_MAX);
	assert_int_equal(sampler_cache_slots(1000000), SAMPLER_CACHE_MAX);
	assert_int_equal(sampler_cache_slots(4u << 20), 4);
	assert_int_equal(sampler_cache_slots((4u << 20) + 1), 3);
	assert_int_equal(sampler_cache_slots(8u << 20), 2);
	assert_int_equal(sampler_cache_slots(UINT32_MAX), 2);
}

/* Epochs in use that fit the cache are computed once each however often
 * a client cycles through them (the issue: one client cycling 1,2,3 made
 * every request reshuffle), and the order is the same after eviction. */
static void test_cache_keeps_epochs_in_use(void **state)
{
	enum { N = 1000, BS = 10 };
	uint32_t a[BS], b[BS];
	(void)state;

	sampler_t *s = make(N, BS, true, false);
	sampler_t *ref = make(N, BS, true, false);
	assert_int_equal(sampler_computed(s), 0);
	for (uint32_t round = 0; round < 50; round++)
		for (uint32_t e = 1; e <= SAMPLER_CACHE_MAX; e++) {
			assert_int_equal(sampler_batch(s, e, 0, 1, round, a, NULL), BS);
			assert_int_equal(sampler_batch(ref, e, 0, 1, round, b, NULL), BS);
			assert_memory_equal(a, b, sizeof(a));
		}
	assert_int_equal(sampler_computed(s), SAMPLER_CACHE_MAX);
	/* one epoch more than the slots: the least recently used goes */
	assert_int_equal(sampler_batch(s, 100, 0, 1, 0, a, NULL), BS);
	assert_int_equal(sampler_computed(s), SAMPLER_CACHE_MAX + 1);
	assert_int_equal(sampler_batch(s, SAMPLER_CACHE_MAX, 0, 1, 0, a, NULL), BS);
	assert_int_equal(sampler_computed(s), SAMPLER_CACHE_MAX + 1);
	assert_int_equal(sampler_batch(s, 1, 0, 1, 7, a, NULL), BS);
	assert_int_equal(sampler_computed(s), SAMPLER_CACHE_MAX + 2);
	assert_int_equal(sampler_batch(ref, 1, 0, 1, 7, b, NULL), BS);
	assert_memory_equal(a, b, sizeof(a));
	sampler_destroy(&s);
	sampler_destroy(&ref);
}

struct same_arg {
	sampler_t *s;
	pthread_barrier_t *go;
	uint32_t batch;
	uint32_t idx[16];
	int rc;
};

static void *same_epoch(void *p)
{
	struct same_arg *a = p;

	pthread_barrier_wait(a->go);
	a->rc = sampler_batch(a->s, 7, 0, 1, a->batch, a->idx, NULL);
	return NULL;
}

/* Threads that need the same missing epoch at once compute it once: the
 * others wait on the slot (the claim is made under the lock, so exactly
 * one computes whatever the timing). */
static void test_one_compute_per_epoch(void **state)
{
	enum { T = 6, N = 1 << 20, BS = 16 };
	pthread_t th[T];
	struct same_arg arg[T];
	pthread_barrier_t go;
	uint32_t want[BS];
	(void)state;

	sampler_t *s = make(N, BS, true, false);
	sampler_t *ref = make(N, BS, true, false);
	assert_int_equal(pthread_barrier_init(&go, NULL, T), 0);
	for (uint32_t t = 0; t < T; t++) {
		arg[t] = (struct same_arg){ .s = s, .go = &go, .batch = t * 1000 };
		assert_int_equal(pthread_create(&th[t], NULL, same_epoch, &arg[t]), 0);
	}
	for (uint32_t t = 0; t < T; t++)
		assert_int_equal(pthread_join(th[t], NULL), 0);
	assert_int_equal(sampler_computed(s), 1);
	for (uint32_t t = 0; t < T; t++) {
		assert_int_equal(arg[t].rc, BS);
		assert_int_equal(sampler_batch(ref, 7, 0, 1, t * 1000, want, NULL), BS);
		assert_memory_equal(arg[t].idx, want, sizeof(want));
	}
	pthread_barrier_destroy(&go);
	sampler_destroy(&s);
	sampler_destroy(&ref);
}

/* aug_repeats: the identity order stretched to [0,0,0,1,1,1,...], rank r
 * taking entries r, r+w, ..., the shard size and batch count unchanged,
 * wrap-around beyond K*N flagged as pads. */
static void test_repeats(void **state)
{
	struct sampler_params p = { .n = 10, .batch_size = 4, .shuffle = false,
				    .drop_last = false, .key = 1, .repeats = 3 };
	struct sampler_params q = p;
	uint32_t idx[4];
	uint8_t pad[4];

	(void)state;
	q.repeats = 0;
	sampler_t *s = sampler_new(&p), *plain = sampler_new(&q);
	assert_non_null(s);
	for (uint32_t world = 1; world <= 4; world++) {
		assert_int_equal(sampler_shard_size(s, world), sampler_shard_size(plain, world));
		assert_int_equal(sampler_batches(s, world), sampler_batches(plain, world));
		for (uint32_t r = 0; r < world; r++)
			for (uint32_t b = 0; b < sampler_batches(s, world); b++) {
				int n = sampler_batch(s, 0, r, world, b, idx, pad);
				assert_true(n > 0);
				for (int k = 0; k < n; k++) {
					uint64_t q2 = (uint64_t)(b * 4 + k) * world + r;
					assert_int_equal(idx[k], (q2 % 30) / 3);
					assert_int_equal(pad[k], q2 >= 30);
				}
			}
	}
	/* world 3: the three copies of index 0 are on ranks 0, 1, 2 */
	for (uint32_t r = 0; r < 3; r++) {
		sampler_batch(s, 0, r, 3, 0, idx, pad);
		assert_int_equal(idx[0], 0);
		assert_int_equal(idx[1], 1);
	}
	sampler_destroy(&s);
	sampler_destroy(&plain);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_coverage),
		cmocka_unit_test(test_pad_values),
		cmocka_unit_test(test_drop_last_empty),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_permutation_definition),
		cmocka_unit_test(test_epochs),
		cmocka_unit_test(test_ranks_agree),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_large),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_repeats),
		cmocka_unit_test(test_cache_slots),
		cmocka_unit_test(test_cache_keeps_epochs_in_use),
		cmocka_unit_test(test_one_compute_per_epoch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
