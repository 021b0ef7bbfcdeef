/*
 * rng.c — Philox4x32-10 streams and the distributions drawn from them.
 *
 * A stream is (key, counter); every block of four words is the Philox
 * function of the counter, so a stream holds no hidden state beyond its
 * coordinates and how many words were taken. The block index lives in the
 * low 24 bits of ctr[0], the attempt in the top 8; a stream that needs more
 * than 2^24 blocks (a shuffle of more than ~64M elements) carries into the
 * attempt byte, which only overlaps retries of the same stream.
 *
 * Every function here consumes words in a fixed order, so the numbers
 * depend only on the coordinates and the sequence of calls.
 */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

#define GOLDEN64 0x9E3779B97F4A7C15ull

static inline void philox_round(uint32_t c[4], const uint32_t k[2])
{
	uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
	uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
	uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
	uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;

	c[0] = hi1 ^ c[1] ^ k[0];
	c[1] = lo1;
	c[2] = hi0 ^ c[3] ^ k[1];
	c[3] = lo0;
}

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
	uint32_t c[4] = { ctr[0], ctr[1], ctr[2], ctr[3] };
	uint32_t k[2] = { key[0], key[1] };

	for (int i = 0; i < 10; i++) {
		if (i > 0) {
			k[0] += PHILOX_W0;
			k[1] += PHILOX_W1;
		}
		philox_round(c, k);
	}
	out[0] = c[0];
	out[1] = c[1];
	out[2] = c[2];
	out[3] = c[3];
}

uint64_t rng_mix64(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

uint64_t rng_hash_str(const char *s)
{
	uint64_t h = 0xCBF29CE484222325ull;

	if (!s)
		return h;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001B3ull;
	}
	return h;
}

uint64_t rng_key(uint64_t seed, const char *pipeline, uint32_t rank, uint32_t world)
{
	uint64_t h = rng_mix64(seed + GOLDEN64);

	h = rng_mix64(h ^ rng_hash_str(pipeline));
	h = rng_mix64(h ^ rng_mix64((((uint64_t)rank << 32) | world) + 2 * GOLDEN64));
	return h;
}

void rng_init(rng_t *r, uint64_t key, uint32_t epoch, uint32_t batch,
	      uint32_t position, enum rng_purpose purpose, uint32_t attempt)
{
	r->key[0] = (uint32_t)key;
	r->key[1] = (uint32_t)(key >> 32);
	r->ctr[3] = epoch;
	r->ctr[2] = batch;
	r->ctr[1] = (position << 8) | ((uint32_t)purpose & 0xFFu);
	r->ctr[0] = attempt << 24;
	r->out[0] = r->out[1] = r->out[2] = r->out[3] = 0;
	r->used = 4;
}

uint32_t rng_u32(rng_t *r)
{
	if (r->used >= 4) {
		philox4x32_10(r->ctr, r->key, r->out);
		r->ctr[0]++;
		r->used = 0;
	}
	return r->out[r->used++];
}

uint64_t rng_u64(rng_t *r)
{
	uint64_t hi = rng_u32(r);
	uint64_t lo = rng_u32(r);

	return (hi << 32) | lo;
}

double rng_uniform(rng_t *r)
{
	return (double)(rng_u64(r) >> 11) * 0x1.0p-53;
}

/* Uniform in (0, 1]: safe to take the log of. */
static double uniform_open0(rng_t *r)
{
	return 1.0 - rng_uniform(r);
}

/* Lemire's nearly divisionless method: exact, and one draw almost always. */
uint32_t rng_below(rng_t *r, uint32_t n)
{
	if (n <= 1)
		return 0;
	uint64_t m = (uint64_t)rng_u32(r) * n;
	uint32_t l = (uint32_t)m;
	if (l < n) {
		uint32_t t = (uint32_t)(-n) % n;
		while (l < t) {
			m = (uint64_t)rng_u32(r) * n;
			l = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}

int32_t rng_range(rng_t *r, int32_t lo, int32_t hi)
{
	if (hi <= lo)
		return lo;
	uint64_t span = (uint64_t)((int64_t)hi - (int64_t)lo) + 1;
	if (span > UINT32_MAX)
		return (int32_t)((int64_t)lo + (int64_t)rng_u32(r));
	return (int32_t)((int64_t)lo + (int64_t)rng_below(r, (uint32_t)span));
}

/* Standard normal, Box–Muller; one deviate per call (the sine is dropped
 * so that nothing is carried between calls). */
static double normal(rng_t *r)
{
	double u1 = uniform_open0(r);
	double u2 = rng_uniform(r);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Marsaglia–Tsang for shape >= 1; returns the log of the deviate. */
static double log_gamma_mt(rng_t *r, double shape)
{
	double d = shape - 1.0 / 3.0;
	double c = 1.0 / sqrt(9.0 * d);

	for (;;) {
		double x, v;
		do {
			x = normal(r);
			v = 1.0 + c * x;
		} while (v <= 0.0);
		v = v * v * v;
		double u = uniform_open0(r);
		double x2 = x * x;
		if (u < 1.0 - 0.0331 * x2 * x2)
			return log(d) + log(v);
		if (log(u) < 0.5 * x2 + d * (1.0 - v + log(v)))
			return log(d) + log(v);
	}
}

/*
 * log of a Gamma(shape, 1) deviate. Working in logs keeps Beta exact for
 * tiny shapes, where both gammas underflow to 0 as doubles.
 * shape < 1: Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia–Tsang's boost).
 */
static double log_gamma(rng_t *r, double shape)
{
	if (!(shape > 0.0))
		return -INFINITY;
	if (isinf(shape))
		return INFINITY;
	if (shape < 1.0) {
		double g = log_gamma_mt(r, shape + 1.0);
		return g + log(uniform_open0(r)) / shape;
	}
	return log_gamma_mt(r, shape);
}

double rng_gamma(rng_t *r, double shape)
{
	return exp(log_gamma(r, shape));
}

double rng_beta(rng_t *r, double a, double b)
{
	double lx = log_gamma(r, a);
	double ly = log_gamma(r, b);

	if (isinf(lx) && isinf(ly) && (lx > 0) == (ly > 0)) {
		/* Both gammas 0 (or both infinite): the ratio is undefined.
		 * For shapes near 0, Beta puts mass a/(a+b) at 1 and the
		 * rest at 0, so decide with one more draw. */
		double pa = (a > 0.0 && b > 0.0) ? a / (a + b) : 0.5;
		if (isnan(pa))
			pa = 0.5;
		return rng_uniform(r) < pa ? 1.0 : 0.0;
	}
	/* X / (X + Y) = 1 / (1 + exp(ly - lx)) */
	double t = ly - lx;
	if (t > 745.0)
		return 0.0;
	return 1.0 / (1.0 + exp(t));
}

void rng_shuffle_u32(rng_t *r, uint32_t *v, uint32_t n)
{
	if (n < 2)
		return;
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = rng_below(r, i + 1);
		uint32_t t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}
