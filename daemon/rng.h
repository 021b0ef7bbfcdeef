/*
 * rng.h — counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
 *
 * There is no shared generator state anywhere in cutmixd: every random
 * decision is drawn from a stream whose key and counter are derived from
 * (seed, pipeline, epoch, rank, world, batch, position, purpose). Two
 * streams with the same coordinates give the same numbers on any thread, in
 * any order, on any machine; that is what makes a batch a pure function of
 * its request.
 */
#ifndef CUTMIXD_RNG_H
#define CUTMIXD_RNG_H

#include <stdint.h>

/* What a stream is used for; part of the counter so streams never overlap. */
enum rng_purpose {
	RNG_PERMUTE = 1,  /* epoch permutation of the dataset */
	RNG_SAMPLE  = 2,  /* per sample: crop, flip, Cutout */
	RNG_MIX     = 3,  /* per batch / pair / element: CutMix, MixUp */
	RNG_PARTNER = 4,  /* per batch: partner permutation */
	RNG_REPLACE = 5,  /* per sample: replacement for an unreadable file */
	RNG_NOISE   = 6,  /* per sample: Cutout noise fill */
	RNG_POLICY  = 7,  /* per sample: auto_augment and color_jitter */
	RNG_ERASE   = 8,  /* per sample: RandomErasing boxes */
	RNG_ERASE_FILL = 9, /* per sample: RandomErasing rand/pixel fill */
	RNG_INTERP  = 10, /* per sample: train_interpolation = random */
};

typedef struct rng {
	uint32_t key[2];
	uint32_t ctr[4];
	uint32_t out[4];
	unsigned used; /* words of out[] consumed; 4 = need a new block */
} rng_t;

/* The raw block function, exposed for known-answer tests. */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* 64-bit mixing hash (splitmix64 finaliser) and FNV-1a of a string. */
uint64_t rng_mix64(uint64_t x);
uint64_t rng_hash_str(const char *s);

/*
 * A stream. `key` should be rng_key(seed, pipeline, rank, world) (or
 * without rank/world for things every rank must agree on, like the epoch
 * permutation); ctr words: epoch, batch, (position << 8 | purpose), and an
 * `attempt` (retry number) that lands in the top byte of the block counter.
 */
uint64_t rng_key(uint64_t seed, const char *pipeline, uint32_t rank, uint32_t world);
void rng_init(rng_t *r, uint64_t key, uint32_t epoch, uint32_t batch,
	      uint32_t position, enum rng_purpose purpose, uint32_t attempt);

uint32_t rng_u32(rng_t *r);
uint64_t rng_u64(rng_t *r);
/* Uniform double in [0,1) with 53 random bits. */
double rng_uniform(rng_t *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint32_t rng_below(rng_t *r, uint32_t n);
/* Uniform integer in [lo, hi] inclusive. */
int32_t rng_range(rng_t *r, int32_t lo, int32_t hi);
/* Gamma(shape, 1) (Marsaglia–Tsang) and Beta(a, b) via two gammas. */
double rng_gamma(rng_t *r, double shape);
double rng_beta(rng_t *r, double a, double b);
/* Fisher–Yates shuffle of v[0..n). */
void rng_shuffle_u32(rng_t *r, uint32_t *v, uint32_t n);

#endif
