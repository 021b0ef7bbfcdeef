/*
 * augment.c — crop boxes, flip, Cutout, CutMix/MixUp and soft labels.
 * The semantics are those of ../shared/specs/augmentations.md; comments
 * name the reference each rule follows.
 */
#include "augment.h"

#include <math.h>
#include <string.h>

#include "wire.h"

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }
static int iclip(int v, int lo, int hi) { return imin(imax(v, lo), hi); }

/* Python's round(): half to even (the default FP rounding mode). */
static int round_even(double v)
{
	return (int)nearbyint(v);
}

void augment_rrc(rng_t *r, int W, int H, const double scale[2],
		 const double ratio[2], struct crop_box *out)
{
	double area = (double)W * (double)H;
	double log_r0 = log(ratio[0]), log_r1 = log(ratio[1]);
	int w, h, x, y;

	for (int attempt = 0; attempt < 10; attempt++) {
		double target = area * (scale[0] + rng_uniform(r) * (scale[1] - scale[0]));
		double aspect = exp(log_r0 + rng_uniform(r) * (log_r1 - log_r0));

		w = round_even(sqrt(target * aspect));
		h = round_even(sqrt(target / aspect));
		if (w > 0 && w <= W && h > 0 && h <= H) {
			y = (int)rng_below(r, (uint32_t)(H - h + 1));
			x = (int)rng_below(r, (uint32_t)(W - w + 1));
			goto done;
		}
	}
	/* Fallback: central crop with the aspect clamped into `ratio`. */
	double in_ratio = (double)W / (double)H;
	if (in_ratio < ratio[0]) {
		w = W;
		h = round_even(w / ratio[0]);
	} else if (in_ratio > ratio[1]) {
		h = H;
		w = round_even(h * ratio[1]);
	} else {
		w = W;
		h = H;
	}
	y = (H - h) / 2;
	x = (W - w) / 2;
done:
	out->x0 = x;
	out->y0 = y;
	out->x1 = x + w;
	out->y1 = y + h;
}

void augment_center_geom(int W, int H, uint32_t resize, uint32_t size,
			 struct center_geom *g)
{
	/* torchvision _compute_resized_output_size: the long side is
	 * int(resize * long / short), truncated. */
	if (W <= H) {
		g->new_w = (int)resize;
		g->new_h = (int)((double)resize * H / W);
	} else {
		g->new_h = (int)resize;
		g->new_w = (int)((double)resize * W / H);
	}
	g->top = round_even((g->new_h - (double)size) / 2.0);
	g->left = round_even((g->new_w - (double)size) / 2.0);
}

void augment_center(int W, int H, uint32_t resize, uint32_t size,
		    struct crop_box *out)
{
	struct center_geom g;

	augment_center_geom(W, H, resize, size, &g);
	int new_w = g.new_w, new_h = g.new_h, top = g.top, left = g.left;
	double sx = (double)W / new_w, sy = (double)H / new_h;

	out->x0 = left * sx;
	out->y0 = top * sy;
	out->x1 = (left + (double)size) * sx;
	out->y1 = (top + (double)size) * sy;
	/* Guard against rounding past the edge (resize >= size always). */
	if (out->x1 > W)
		out->x1 = W;
	if (out->y1 > H)
		out->y1 = H;
	if (out->x0 < 0)
		out->x0 = 0;
	if (out->y0 < 0)
		out->y0 = 0;
}

void augment_flip(uint8_t *img, int W, int H, size_t stride)
{
	for (int y = 0; y < H; y++) {
		uint8_t *a = img + (size_t)y * stride;
		uint8_t *b = a + (size_t)(W - 1) * 3;
		while (a < b) {
			uint8_t t0 = a[0], t1 = a[1], t2 = a[2];
			a[0] = b[0]; a[1] = b[1]; a[2] = b[2];
			b[0] = t0; b[1] = t1; b[2] = t2;
			a += 3;
			b -= 3;
		}
	}
}

int augment_cutout_boxes(rng_t *r, const struct pipeline_cfg *p, int W, int H,
			 int32_t holes[CONFIG_MAX_HOLES][4])
{
	if (p->cutout_size[1] == 0)
		return 0;
	if (!(rng_uniform(r) < p->cutout_prob))
		return 0;

	int n = (int)p->cutout_holes;
	for (int k = 0; k < n; k++) {
		int len = rng_range(r, (int32_t)p->cutout_size[0], (int32_t)p->cutout_size[1]);
		int cy = (int)rng_below(r, (uint32_t)H);
		int cx = (int)rng_below(r, (uint32_t)W);

		holes[k][0] = iclip(cx - len / 2, 0, W);
		holes[k][1] = iclip(cy - len / 2, 0, H);
		holes[k][2] = iclip(cx + len / 2, 0, W);
		holes[k][3] = iclip(cy + len / 2, 0, H);
	}
	return n;
}

void augment_cutout_fill(uint8_t *img, int W, int H, size_t stride,
			 const struct pipeline_cfg *p,
			 const int32_t holes[][4], int n, rng_t *noise)
{
	uint8_t rgb[3] = { p->cutout_value, p->cutout_value, p->cutout_value };

	if (p->cutout_fill == FILL_MEAN)
		for (int c = 0; c < 3; c++)
			rgb[c] = (uint8_t)lrint(fmin(fmax(p->mean[c], 0.0), 1.0) * 255.0);

	for (int k = 0; k < n; k++) {
		int x0 = holes[k][0], y0 = holes[k][1];
		int x1 = holes[k][2], y1 = holes[k][3];
		for (int y = y0; y < y1; y++) {
			uint8_t *px = img + (size_t)y * stride + (size_t)x0 * 3;
			if (p->cutout_fill == FILL_NOISE) {
				for (int x = x0; x < x1; x++, px += 3) {
					uint32_t v = rng_u32(noise);
					px[0] = (uint8_t)v;
					px[1] = (uint8_t)(v >> 8);
					px[2] = (uint8_t)(v >> 16);
				}
			} else {
				for (int x = x0; x < x1; x++, px += 3) {
					px[0] = rgb[0];
					px[1] = rgb[1];
					px[2] = rgb[2];
				}
			}
		}
	}
	(void)W;
	(void)H;
}

double augment_cutmix_box(rng_t *r, const struct pipeline_cfg *p,
			  double lam_raw, int W, int H, int32_t box[4])
{
	int x0, y0, x1, y1;

	if (p->has_cutmix_minmax) {
		/* timm rand_bbox_minmax, with inclusive ranges as the spec
		 * writes them: cut ~ U{floor(H*a)..floor(H*b)}, origin
		 * U{0..H-cut} so the box lies fully inside. */
		int ch = rng_range(r, (int)floor(H * p->cutmix_minmax[0]),
				   (int)floor(H * p->cutmix_minmax[1]));
		int cw = rng_range(r, (int)floor(W * p->cutmix_minmax[0]),
				   (int)floor(W * p->cutmix_minmax[1]));
		y0 = rng_range(r, 0, H - ch);
		x0 = rng_range(r, 0, W - cw);
		y1 = y0 + ch;
		x1 = x0 + cw;
	} else {
		/* Centre-clip rule (CutMix-PyTorch, timm rand_bbox). */
		double cut = sqrt(1.0 - lam_raw);
		int ch = (int)floor(H * cut), cw = (int)floor(W * cut);
		int cy = (int)rng_below(r, (uint32_t)H);
		int cx = (int)rng_below(r, (uint32_t)W);
		y0 = iclip(cy - ch / 2, 0, H);
		y1 = iclip(cy + ch / 2, 0, H);
		x0 = iclip(cx - cw / 2, 0, W);
		x1 = iclip(cx + cw / 2, 0, W);
	}
	box[0] = x0;
	box[1] = y0;
	box[2] = x1;
	box[3] = y1;
	return 1.0 - (double)(y1 - y0) * (double)(x1 - x0) / ((double)W * (double)H);
}

/* One draw of timm's Mixup._params_per_batch for one unit. */
static void mix_unit(const struct pipeline_cfg *p, rng_t *r, int W, int H,
		     uint8_t *op, double *lam, int32_t box[4])
{
	*op = WIRE_OP_NONE;
	*lam = 1.0;
	memset(box, 0, 4 * sizeof(*box));

	if (!(rng_uniform(r) < p->prob))
		return;

	bool cutmix;
	double alpha;
	if (p->mixup_alpha > 0 && p->cutmix_alpha > 0) {
		cutmix = rng_uniform(r) < p->switch_prob;
		alpha = cutmix ? p->cutmix_alpha : p->mixup_alpha;
	} else if (p->mixup_alpha > 0) {
		cutmix = false;
		alpha = p->mixup_alpha;
	} else {
		cutmix = true;
		alpha = p->cutmix_alpha;
	}
	double lam_raw = rng_beta(r, alpha, alpha);

	if (cutmix) {
		double lam_box = augment_cutmix_box(r, p, lam_raw, W, H, box);
		*op = WIRE_OP_CUTMIX;
		*lam = (p->correct_lam || p->has_cutmix_minmax) ? lam_box : lam_raw;
	} else {
		*op = WIRE_OP_MIXUP;
		*lam = lam_raw;
	}
}

static void set_item(struct mix_item *it, int32_t partner, uint8_t op,
		     double lam, const int32_t box[4])
{
	it->partner = partner;
	it->op = op;
	it->lam = lam;
	memcpy(it->box, box, sizeof(it->box));
}

/* The partner of position i: perm[i] (a permutation in every rule). */
static void mix_partners(const struct pipeline_cfg *p, uint64_t key,
			 uint32_t epoch, uint32_t batch, uint32_t B,
			 uint32_t *perm)
{
	rng_t r;

	for (uint32_t i = 0; i < B; i++) {
		switch (p->partner) {
		case PARTNER_FLIP:
			perm[i] = B - 1 - i;
			break;
		case PARTNER_ROLL:
			perm[i] = (i + B - 1) % B;
			break;
		case PARTNER_PERMUTE:
		default:
			perm[i] = i;
			break;
		}
	}
	if (p->partner == PARTNER_PERMUTE) {
		rng_init(&r, key, epoch, batch, 0, RNG_PARTNER, 0);
		rng_shuffle_u32(&r, perm, B);
	}
}

void augment_mix_plan(const struct pipeline_cfg *p, uint64_t key,
		      uint32_t epoch, uint32_t batch, uint32_t B, int W, int H,
		      struct mix_item *items, uint32_t *perm)
{
	static const int32_t nobox[4] = { 0, 0, 0, 0 };
	uint8_t op;
	double lam;
	int32_t box[4];
	rng_t r;

	memset(items, 0, B * sizeof(*items));
	for (uint32_t i = 0; i < B; i++)
		set_item(&items[i], -1, WIRE_OP_NONE, 1.0, nobox);

	if (p->mixup_alpha <= 0 && p->cutmix_alpha <= 0)
		return;
	if (p->off_epoch > 0 && epoch >= p->off_epoch)
		return;

	mix_partners(p, key, epoch, batch, B, perm);

	switch (p->mode) {
	case MIX_BATCH:
		/* One lambda and one box for the whole batch (CutMix paper). */
		rng_init(&r, key, epoch, batch, 0, RNG_MIX, 0);
		mix_unit(p, &r, W, H, &op, &lam, box);
		if (op == WIRE_OP_NONE)
			return;
		for (uint32_t i = 0; i < B; i++)
			if (perm[i] != i)
				set_item(&items[i], (int32_t)perm[i], op, lam, box);
		return;
	case MIX_ELEM:
		/* Each sample its own draw, mixed with its partner. */
		for (uint32_t i = 0; i < B; i++) {
			rng_init(&r, key, epoch, batch, i, RNG_MIX, 0);
			mix_unit(p, &r, W, H, &op, &lam, box);
			if (op != WIRE_OP_NONE && perm[i] != i)
				set_item(&items[i], (int32_t)perm[i], op, lam, box);
		}
		return;
	case MIX_PAIR:
		/* Pairs (perm[2k], perm[2k+1]) for permute, (k, B-1-k) for
		 * flip; both members swap regions with one draw (timm). An odd
		 * sample out stays unmixed. */
		for (uint32_t k = 0; k < B / 2; k++) {
			uint32_t a, b;
			if (p->partner == PARTNER_PERMUTE) {
				a = perm[2 * k];
				b = perm[2 * k + 1];
			} else {
				a = k;
				b = B - 1 - k;
			}
			rng_init(&r, key, epoch, batch, k, RNG_MIX, 0);
			mix_unit(p, &r, W, H, &op, &lam, box);
			if (op == WIRE_OP_NONE)
				continue;
			set_item(&items[a], (int32_t)b, op, lam, box);
			set_item(&items[b], (int32_t)a, op, lam, box);
		}
		return;
	}
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

/* The MixUp loop on AVX2, 16 bytes per step: the same IEEE operations as
 * the scalar loop, in the same order (two products, their sum, the 2^23
 * rounding, the clamp; no FMA), so the bytes do not depend on the CPU.
 * Returns how many bytes it did (a multiple of 16). */
__attribute__((target("avx2")))
static size_t mixup_avx2(uint8_t *dst, const uint8_t *a, const uint8_t *b,
			 size_t n, float lam)
{
	const __m256 la = _mm256_set1_ps(lam), lb = _mm256_set1_ps(1.0f - lam);
	const __m256 magic = _mm256_set1_ps(0x1p23f), zero = _mm256_setzero_ps();
	const __m256 top = _mm256_set1_ps(255.0f);
	size_t k = 0;

	for (; k + 16 <= n; k += 16) {
		__m128i va = _mm_loadu_si128((const __m128i *)(a + k));
		__m128i vb = _mm_loadu_si128((const __m128i *)(b + k));
		__m256i out[2];
		for (int h = 0; h < 2; h++) {
			__m128i sa = h ? _mm_srli_si128(va, 8) : va;
			__m128i sb = h ? _mm_srli_si128(vb, 8) : vb;
			__m256 fa = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sa));
			__m256 fb = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sb));
			__m256 v = _mm256_add_ps(_mm256_mul_ps(fa, la), _mm256_mul_ps(fb, lb));
			v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
			v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
			out[h] = _mm256_cvttps_epi32(v);
		}
		/* 2 x 8 int32 in 0..255 -> 16 bytes in order */
		__m256i w = _mm256_packus_epi32(out[0], out[1]);   /* lanes: 0-3,8-11 | 4-7,12-15 */
		w = _mm256_permute4x64_epi64(w, 0xd8);             /* 0-3,4-7 | 8-11,12-15 */
		__m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(w),
						 _mm256_extracti128_si256(w, 1));
		_mm_storeu_si128((__m128i *)(dst + k), bytes);
	}
	return k;
}

/* libgcc's CPU model, read-only after its constructor: no race. */
static bool have_avx2(void)
{
	return __builtin_cpu_supports("avx2");
}
#endif

void augment_mixup_pixels(uint8_t *dst, const uint8_t *a, const uint8_t *b,
			  size_t n, float lam)
{
	const float lb = 1.0f - lam;
	const float magic = 0x1p23f; /* x + 2^23 - 2^23 = rint(x) for 0 <= x < 2^22 */

	/* lam is in [0, 1], so v is in [0, 255] up to one rounding: the magic
	 * constant rounds half to even exactly as rintf does (default rounding
	 * mode; no -ffast-math here), and the loop vectorises with SSE2. */
	size_t k = 0;

#if defined(__GNUC__) && defined(__x86_64__)
	if (have_avx2())
		k = mixup_avx2(dst, a, b, n, lam);
#endif
	/* fixed-length blocks through local copies (dst may alias a): GCC
	 * vectorises them at -O2 */
	for (; k + 16 <= n; k += 16) {
		uint8_t la[16], lbb[16], out[16];

		memcpy(la, a + k, 16);
		memcpy(lbb, b + k, 16);
		for (int j = 0; j < 16; j++) {
			float v = (float)la[j] * lam + (float)lbb[j] * lb;
			v = (v + magic) - magic;
			v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
			out[j] = (uint8_t)(int)v;
		}
		memcpy(dst + k, out, 16);
	}
	for (; k < n; k++) {
		float v = (float)a[k] * lam + (float)b[k] * lb;
		v = (v + magic) - magic;
		v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
		dst[k] = (uint8_t)(int)v;
	}
}

/* Bytes of partner pixels sample i needs: its box, or the whole image. */
static size_t mix_bytes(const struct mix_item *it, int W, int H)
{
	if (it->op == WIRE_OP_MIXUP)
		return (size_t)W * H * 3;
	if (it->op == WIRE_OP_CUTMIX)
		return (size_t)(it->box[2] - it->box[0]) * (size_t)(it->box[3] - it->box[1]) * 3;
	return 0;
}

size_t augment_mix_scratch_bytes(const struct mix_item *items, uint32_t B,
				 int W, int H)
{
	size_t most = 0;

	for (uint32_t i = 0; i < B; i++) {
		size_t n = mix_bytes(&items[i], W, H);
		if (n > most)
			most = n;
	}
	return most ? most + B : 0; /* the region, then B flags */
}

/* Sample i's mix with partner pixels `src` (a whole image; `packed`: only
 * its box, row after row, as saved by save_partner). */
static void mix_one(uint8_t *own, const uint8_t *src, bool packed,
		    const struct mix_item *it, int W, int H)
{
	size_t row = (size_t)W * 3, img = row * (size_t)H;

	if (it->op == WIRE_OP_MIXUP) {
		augment_mixup_pixels(own, own, src, img, (float)it->lam);
	} else if (it->op == WIRE_OP_CUTMIX) {
		size_t off = (size_t)it->box[0] * 3;
		size_t len = (size_t)(it->box[2] - it->box[0]) * 3;
		for (int y = it->box[1]; y < it->box[3]; y++) {
			const uint8_t *from = packed ? src : src + (size_t)y * row + off;
			memmove(own + (size_t)y * row + off, from, len);
			if (packed)
				src += len;
		}
	}
}

/* Copy what sample `it` needs of `src` (its box, packed, or the image). */
static void save_partner(uint8_t *to, const uint8_t *src,
			 const struct mix_item *it, int W, int H)
{
	size_t row = (size_t)W * 3;

	if (it->op == WIRE_OP_MIXUP) {
		memcpy(to, src, row * (size_t)H);
		return;
	}
	size_t off = (size_t)it->box[0] * 3;
	size_t len = (size_t)(it->box[2] - it->box[0]) * 3;
	for (int y = it->box[1]; y < it->box[3]; y++, to += len)
		memcpy(to, src + (size_t)y * row + off, len);
}

static bool mixes(const struct mix_item *it)
{
	return it->partner >= 0 &&
	       (it->op == WIRE_OP_MIXUP || it->op == WIRE_OP_CUTMIX);
}

/* Mix along i -> partner -> ... while the next one is unmixed; `last`
 * (or B: none) takes its partner from `saved`. */
static void mix_walk(uint8_t *images, uint8_t *done, uint32_t i, uint32_t last,
		     const uint8_t *saved, int W, int H,
		     const struct mix_item *items)
{
	size_t img = (size_t)W * 3 * (size_t)H;

	for (;;) {
		const struct mix_item *it = &items[i];
		done[i] = 1;
		if (!mixes(it))
			return;
		uint32_t j = (uint32_t)it->partner;
		mix_one(images + (size_t)i * img,
			i == last ? saved : images + (size_t)j * img,
			i == last, it, W, H);
		if (i == last || done[j] == 1)
			return;
		i = j;
	}
}

/*
 * Sample i becomes mix(i, partner(i)) of the pixels from before the call.
 * The partners are one-to-one (a permutation, or pairs), so the samples
 * form chains and cycles: a chain is mixed from its head on (each
 * partner is still unmixed when read); a cycle the same way, from any
 * start, after saving the region its last sample needs of the start.
 * Scratch: one image at most (was every partner region of the batch:
 * up to a whole batch, 18 MiB per worker, for MixUp).
 */
void augment_apply_mix(uint8_t *images, uint32_t B, int W, int H,
		       const struct mix_item *items, uint8_t *scratch)
{
	size_t img = (size_t)W * 3 * (size_t)H, most = 0;

	for (uint32_t i = 0; i < B; i++) {
		size_t n = mix_bytes(&items[i], W, H);
		if (n > most)
			most = n;
	}
	uint8_t *saved = scratch, *done = scratch + most;

	memset(done, 0, B);
	for (uint32_t i = 0; i < B; i++)
		if (mixes(&items[i]))
			done[items[i].partner] = 2; /* somebody's partner */
	for (uint32_t i = 0; i < B; i++)
		if (done[i] == 0)
			mix_walk(images, done, i, B, NULL, W, H, items);
	for (uint32_t s = 0; s < B; s++) {
		if (done[s] == 1)
			continue;
		uint32_t last = s; /* in a cycle: find who takes from s */
		while ((uint32_t)items[last].partner != s)
			last = (uint32_t)items[last].partner;
		save_partner(saved, images + (size_t)s * img, &items[last], W, H);
		mix_walk(images, done, s, last, saved, W, H, items);
	}
}

void augment_labels(float *labels, uint32_t B, uint32_t K, double smoothing,
		    const int32_t *y, const struct mix_item *items)
{
	double off = smoothing / K;
	double on = 1.0 - smoothing + off;

	for (uint32_t i = 0; i < B; i++) {
		float *row = labels + (size_t)i * K;
		const struct mix_item *it = &items[i];

		for (uint32_t k = 0; k < K; k++)
			row[k] = (float)off;
		if (it->op == WIRE_OP_NONE || it->partner < 0) {
			row[y[i]] = (float)on;
			continue;
		}
		int32_t yi = y[i], yj = y[it->partner];
		if (yi == yj) {
			row[yi] = (float)on;
			continue;
		}
		row[yi] = (float)(it->lam * on + (1.0 - it->lam) * off);
		row[yj] = (float)((1.0 - it->lam) * on + it->lam * off);
	}
}
