/*
 * test_rng.c — Philox known answers, stream identity and the statistics of
 * every distribution in rng.h. All streams are fixed, so every statistic
 * below is deterministic; the tolerances are several standard errors wide.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "rng.h"

#define KEY 0x0123456789ABCDEFull

/* Random123 kat_vectors: "philox4x32 10 ctr[0..3] key[0..1] out[0..3]". */
static void test_philox_kat(void **state)
{
	static const struct {
		uint32_t ctr[4], key[2], out[4];
	} kat[] = {
		{ { 0, 0, 0, 0 }, { 0, 0 },
		  { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
		{ { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff },
		  { 0xffffffff, 0xffffffff },
		  { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
		{ { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 },
		  { 0xa4093822, 0x299f31d0 },
		  { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
		uint32_t out[4];
		philox4x32_10(kat[i].ctr, kat[i].key, out);
		for (int w = 0; w < 4; w++)
			assert_int_equal(out[w], kat[i].out[w]);
	}
}

/* rng_init places the coordinates where rng.h says. */
static void test_counter_layout(void **state)
{
	rng_t r;
	uint32_t expect[4], out[4];
	(void)state;

	rng_init(&r, 0xA4093822299F31D0ull, 7, 9, 0x12345, RNG_MIX, 3);
	assert_int_equal(r.key[0], 0x299F31D0u);
	assert_int_equal(r.key[1], 0xA4093822u);
	assert_int_equal(r.ctr[3], 7);
	assert_int_equal(r.ctr[2], 9);
	assert_int_equal(r.ctr[1], (0x12345u << 8) | RNG_MIX);
	assert_int_equal(r.ctr[0], 3u << 24);

	/* first block = philox(ctr), second block = philox(ctr + 1) */
	uint32_t ctr[4] = { 3u << 24, (0x12345u << 8) | RNG_MIX, 9, 7 };
	philox4x32_10(ctr, r.key, expect);
	for (int w = 0; w < 4; w++)
		out[w] = rng_u32(&r);
	assert_memory_equal(out, expect, sizeof(out));
	ctr[0]++;
	philox4x32_10(ctr, r.key, expect);
	for (int w = 0; w < 4; w++)
		out[w] = rng_u32(&r);
	assert_memory_equal(out, expect, sizeof(out));
}

static void test_same_coordinates(void **state)
{
	rng_t a, b;
	(void)state;

	rng_init(&a, KEY, 3, 5, 17, RNG_SAMPLE, 0);
	/* interleave another stream: no hidden shared state */
	rng_t other;
	rng_init(&other, KEY, 3, 5, 18, RNG_SAMPLE, 0);
	for (int i = 0; i < 1000; i++)
		(void)rng_u32(&other);
	rng_init(&b, KEY, 3, 5, 17, RNG_SAMPLE, 0);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(rng_u32(&a), rng_u32(&b));
		(void)rng_u32(&other);
	}
	rng_init(&a, KEY, 3, 5, 17, RNG_MIX, 0);
	rng_init(&b, KEY, 3, 5, 17, RNG_MIX, 0);
	for (int i = 0; i < 100; i++) {
		assert_true(rng_uniform(&a) == rng_uniform(&b));
		assert_true(rng_beta(&a, 0.4, 0.4) == rng_beta(&b, 0.4, 0.4));
		assert_int_equal(rng_below(&a, 1000), rng_below(&b, 1000));
	}
}

/* Changing any one coordinate changes the stream. */
static void test_different_coordinates(void **state)
{
	struct { uint64_t key; uint32_t e, b, p, purpose, att; } c[] = {
		{ KEY, 1, 2, 3, RNG_SAMPLE, 0 },
		{ KEY + 1, 1, 2, 3, RNG_SAMPLE, 0 },
		{ KEY ^ (1ull << 40), 1, 2, 3, RNG_SAMPLE, 0 },
		{ KEY, 2, 2, 3, RNG_SAMPLE, 0 },
		{ KEY, 1, 3, 3, RNG_SAMPLE, 0 },
		{ KEY, 1, 2, 4, RNG_SAMPLE, 0 },
		{ KEY, 1, 2, 3, RNG_MIX, 0 },
		{ KEY, 1, 2, 3, RNG_SAMPLE, 1 },
		{ KEY, 2, 1, 3, RNG_SAMPLE, 0 },
	};
	enum { NC = sizeof(c) / sizeof(c[0]), W = 8 };
	uint32_t v[NC][W];
	(void)state;

	for (int i = 0; i < NC; i++) {
		rng_t r;
		rng_init(&r, c[i].key, c[i].e, c[i].b, c[i].p,
			 (enum rng_purpose)c[i].purpose, c[i].att);
		for (int w = 0; w < W; w++)
			v[i][w] = rng_u32(&r);
	}
	for (int i = 0; i < NC; i++)
		for (int j = i + 1; j < NC; j++) {
			int same = 0;
			for (int w = 0; w < W; w++)
				same += v[i][w] == v[j][w];
			assert_true(same <= 1);
		}
}

static void test_key(void **state)
{
	(void)state;
	uint64_t k = rng_key(42, "train", 0, 1);
	assert_true(k == rng_key(42, "train", 0, 1));
	assert_true(k != rng_key(43, "train", 0, 1));
	assert_true(k != rng_key(42, "val", 0, 1));
	assert_true(k != rng_key(42, "train", 1, 1));
	assert_true(k != rng_key(42, "train", 0, 2));
	assert_true(rng_key(42, "train", 1, 2) != rng_key(42, "train", 2, 1));
	assert_true(rng_key(0, "", 0, 0) != 0);
	assert_true(rng_key(0, NULL, 0, 0) == rng_key(0, "", 0, 0));

	/* FNV-1a 64 reference values */
	assert_true(rng_hash_str("") == 0xcbf29ce484222325ull);
	assert_true(rng_hash_str("a") == 0xaf63dc4c8601ec8cull);
	assert_true(rng_hash_str("foobar") == 0x85944171f73967e8ull);
	/* splitmix64 finaliser: first output of splitmix64 seeded with 0 */
	assert_true(rng_mix64(0x9E3779B97F4A7C15ull) == 0xe220a8397b1dcdafull);

	/* avalanche: one input bit flips about half the output bits */
	int total = 0;
	for (int b = 0; b < 64; b++) {
		uint64_t d = rng_key(1ull << b, "p", 0, 0) ^ rng_key(0, "p", 0, 0);
		total += __builtin_popcountll(d);
	}
	assert_true(total > 64 * 24 && total < 64 * 40);
}

static void test_uniform_moments(void **state)
{
	enum { N = 1000000 };
	rng_t r;
	double sum = 0, sum2 = 0, mn = 1, mx = 0;
	(void)state;

	rng_init(&r, KEY, 0, 0, 0, RNG_SAMPLE, 0);
	for (int i = 0; i < N; i++) {
		double u = rng_uniform(&r);
		assert_true(u >= 0.0 && u < 1.0);
		sum += u;
		sum2 += u * u;
		mn = u < mn ? u : mn;
		mx = u > mx ? u : mx;
	}
	double mean = sum / N, var = sum2 / N - mean * mean;
	/* se(mean) = 0.29/sqrt(N) = 2.9e-4 */
	assert_true(fabs(mean - 0.5) < 0.0015);
	assert_true(fabs(var - 1.0 / 12) < 0.001);
	assert_true(mn < 1e-5 && mx > 1 - 1e-5);

	/* 53 bits: the low bits of the mantissa are used */
	int low = 0;
	for (int i = 0; i < 1000; i++) {
		double u = rng_uniform(&r) * 0x1.0p53;
		low |= (int)((uint64_t)u & 0xff);
	}
	assert_int_equal(low, 0xff);
}

static double chi_square_below(uint32_t n, int draws_per_cell, uint32_t purpose_pos)
{
	rng_t r;
	uint64_t *cnt = calloc(n, sizeof(*cnt));
	double chi = 0;

	assert_non_null(cnt);
	rng_init(&r, KEY, 1, 1, purpose_pos, RNG_SAMPLE, 0);
	uint64_t total = (uint64_t)n * (uint64_t)draws_per_cell;
	for (uint64_t i = 0; i < total; i++) {
		uint32_t x = rng_below(&r, n);
		assert_true(x < n);
		cnt[x]++;
	}
	for (uint32_t k = 0; k < n; k++) {
		double d = (double)cnt[k] - draws_per_cell;
		chi += d * d / draws_per_cell;
	}
	free(cnt);
	return chi;
}

static void test_below_chi_square(void **state)
{
	static const uint32_t ns[] = { 2, 3, 7, 10, 100, 1000, 3001 };
	(void)state;

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		double df = ns[i] - 1;
		double chi = chi_square_below(ns[i], 1000, (uint32_t)i);
		/* mean df, sd sqrt(2 df): allow 5 sd */
		assert_true(chi < df + 5 * sqrt(2 * df) + 5);
	}
}

static void test_below_bounds(void **state)
{
	rng_t r;
	(void)state;

	rng_init(&r, KEY, 0, 0, 1, RNG_SAMPLE, 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(rng_below(&r, 1), 0);
	assert_int_equal(rng_below(&r, 0), 0);

	/* a bound just over 2^31 rejects about half the draws; still exact
	 * and uniform: about half the values are >= 2^30 */
	uint32_t n = 0x80000001u, seen_high = 0;
	for (int i = 0; i < 10000; i++) {
		uint32_t x = rng_below(&r, n);
		assert_true(x < n);
		seen_high += x >= 0x40000000u;
	}
	assert_true(seen_high > 4700 && seen_high < 5300);
	for (int i = 0; i < 10000; i++)
		(void)rng_below(&r, UINT32_MAX);

	/* rng_range is inclusive and never leaves [lo, hi] */
	int seen[11] = { 0 };
	for (int i = 0; i < 11000; i++) {
		int32_t x = rng_range(&r, -5, 5);
		assert_true(x >= -5 && x <= 5);
		seen[x + 5]++;
	}
	for (int k = 0; k < 11; k++)
		assert_true(seen[k] > 800 && seen[k] < 1200);
	assert_int_equal(rng_range(&r, 4, 4), 4);
	assert_int_equal(rng_range(&r, 4, 3), 4);
	int32_t lo = 0, hi = 0;
	for (int i = 0; i < 1000; i++) {
		int32_t x = rng_range(&r, INT32_MIN, INT32_MAX);
		lo = x < lo ? x : lo;
		hi = x > hi ? x : hi;
	}
	assert_true(lo < INT32_MIN / 2 && hi > INT32_MAX / 2);
	for (int i = 0; i < 1000; i++) {
		int32_t x = rng_range(&r, INT32_MAX - 1, INT32_MAX);
		assert_true(x >= INT32_MAX - 1);
	}
}

static void beta_moments(double a, double b, int n, double *mean, double *var)
{
	rng_t r;
	double s = 0, s2 = 0;

	rng_init(&r, KEY, 2, 0, (uint32_t)(a * 1000 + b), RNG_MIX, 0);
	for (int i = 0; i < n; i++) {
		double x = rng_beta(&r, a, b);
		assert_true(x >= 0.0 && x <= 1.0);
		s += x;
		s2 += x * x;
	}
	*mean = s / n;
	*var = s2 / n - *mean * *mean;
}

static void test_beta(void **state)
{
	static const double as[] = { 0.2, 1.0, 2.0 };
	enum { N = 200000 };
	double mean, var;
	(void)state;

	beta_moments(1.0, 1.0, N, &mean, &var);
	assert_true(fabs(mean - 0.5) < 0.004);

	for (size_t i = 0; i < sizeof(as) / sizeof(as[0]); i++) {
		double a = as[i];
		double ev = 1.0 / (4.0 * (2.0 * a + 1.0));
		beta_moments(a, a, N, &mean, &var);
		/* se(mean) = sqrt(ev/N) <= 0.0012 */
		assert_true(fabs(mean - 0.5) < 0.005);
		assert_true(fabs(var - ev) < 0.05 * ev);
	}

	/* asymmetric: mean a / (a + b) */
	beta_moments(2.0, 5.0, N, &mean, &var);
	assert_true(fabs(mean - 2.0 / 7.0) < 0.004);
	beta_moments(0.3, 3.0, N, &mean, &var);
	assert_true(fabs(mean - 0.3 / 3.3) < 0.004);
}

/* Shapes so small that both gammas underflow: no NaN, mass at 0 and 1. */
static void test_beta_degenerate(void **state)
{
	rng_t r;
	int ones = 0;
	(void)state;

	rng_init(&r, KEY, 0, 0, 0, RNG_MIX, 0);
	for (int i = 0; i < 10000; i++) {
		double x = rng_beta(&r, 1e-300, 1e-300);
		assert_false(isnan(x));
		assert_true(x >= 0.0 && x <= 1.0);
		ones += x > 0.5;
	}
	assert_true(ones > 4500 && ones < 5500);
	for (int i = 0; i < 1000; i++) {
		double x = rng_beta(&r, 1e-3, 1e-3);
		assert_false(isnan(x));
		assert_true(x >= 0.0 && x <= 1.0);
		x = rng_beta(&r, 1e6, 1e6);
		assert_true(fabs(x - 0.5) < 0.01);
	}
}

static void test_gamma(void **state)
{
	static const double shapes[] = { 0.1, 0.5, 1.0, 2.5, 10.0, 100.0 };
	enum { N = 200000 };
	(void)state;

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		double k = shapes[i], s = 0, s2 = 0;
		rng_t r;
		rng_init(&r, KEY, 4, (uint32_t)i, 0, RNG_MIX, 0);
		for (int j = 0; j < N; j++) {
			double g = rng_gamma(&r, k);
			assert_true(g >= 0.0 && isfinite(g));
			s += g;
			s2 += g * g;
		}
		double mean = s / N, var = s2 / N - mean * mean;
		/* mean k, variance k; se(mean) = sqrt(k/N) */
		assert_true(fabs(mean - k) < 5 * sqrt(k / N));
		assert_true(fabs(var - k) < 0.06 * k);
	}
	rng_t r;
	rng_init(&r, KEY, 0, 0, 0, RNG_MIX, 0);
	assert_true(rng_gamma(&r, 0.0) == 0.0);
	assert_true(rng_gamma(&r, -1.0) == 0.0);
}

static void test_shuffle(void **state)
{
	enum { N = 8, TRIALS = 80000 };
	static uint32_t count[N][N];
	uint32_t v[N];
	rng_t r;
	(void)state;

	memset(count, 0, sizeof(count));
	for (uint32_t t = 0; t < TRIALS; t++) {
		for (uint32_t i = 0; i < N; i++)
			v[i] = i;
		rng_init(&r, KEY, t, 0, 0, RNG_PERMUTE, 0);
		rng_shuffle_u32(&r, v, N);
		uint32_t seen = 0;
		for (uint32_t i = 0; i < N; i++) {
			assert_true(v[i] < N);
			seen |= 1u << v[i];
			count[i][v[i]]++;
		}
		assert_int_equal(seen, (1u << N) - 1);
	}
	/* each value lands at each position with probability 1/N:
	 * expected 10000, sd ~94 */
	double chi = 0, e = (double)TRIALS / N;
	for (int i = 0; i < N; i++)
		for (int j = 0; j < N; j++) {
			double d = count[i][j] - e;
			assert_true(fabs(d) < 6 * sqrt(e));
			chi += d * d / e;
		}
	/* (N-1)^2 = 49 degrees of freedom */
	assert_true(chi < 49 + 5 * sqrt(98.0));

	/* larger: still a permutation, deterministic */
	enum { M = 100003 };
	uint32_t *a = malloc(M * sizeof(*a)), *b = malloc(M * sizeof(*b));
	uint8_t *hit = calloc(M, 1);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(hit);
	for (uint32_t i = 0; i < M; i++)
		a[i] = b[i] = i;
	rng_init(&r, KEY, 1, 0, 0, RNG_PERMUTE, 0);
	rng_shuffle_u32(&r, a, M);
	rng_init(&r, KEY, 1, 0, 0, RNG_PERMUTE, 0);
	rng_shuffle_u32(&r, b, M);
	assert_memory_equal(a, b, M * sizeof(*a));
	uint32_t fixed = 0;
	for (uint32_t i = 0; i < M; i++) {
		assert_int_equal(hit[a[i]], 0);
		hit[a[i]] = 1;
		fixed += a[i] == i;
	}
	assert_true(fixed < 10);
	free(a);
	free(b);
	free(hit);

	/* n = 0 and 1 are no-ops */
	uint32_t one = 5;
	rng_shuffle_u32(&r, &one, 1);
	assert_int_equal(one, 5);
	rng_shuffle_u32(&r, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_philox_kat),
		cmocka_unit_test(test_counter_layout),
		cmocka_unit_test(test_same_coordinates),
		cmocka_unit_test(test_different_coordinates),
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_uniform_moments),
		cmocka_unit_test(test_below_chi_square),
		cmocka_unit_test(test_below_bounds),
		cmocka_unit_test(test_beta),
		cmocka_unit_test(test_beta_degenerate),
		cmocka_unit_test(test_gamma),
		cmocka_unit_test(test_shuffle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
