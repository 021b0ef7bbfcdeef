/*
 * config_check.c — the cross-field rules of the config file, run after
 * the file and the overrides were read: one source per dataset, the eval
 * pipeline's keys and defaults, crop and resize, the recipes, the
 * pipeline's dataset, both CURVE keys or neither, the daemon-wide
 * defaults computed from others.
 */
#include "config.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"
#include "policy.h"

#define AUTO_CROP_PCT     0.875      /* resize = round(size / 0.875) */

/* The recipe keys (docs/AUGMENTATIONS.md): parse auto_augment and
 * color_jitter, resolve train_interpolation, check the erasing range. */
static int check_recipes(struct loader *ld, struct section *s)
{
	struct pipeline_cfg *p = s->base;
	const struct entry *e;
	char why[200];

	e = cfg_find_entry(s, "train_interpolation");
	if (!e)
		p->train_interpolation = TI_UNSET;
	if (e) {
		int v = p->train_interpolation;

		if (cfg_find_entry(s, "interpolation"))
			return cfg_fail(ld, e->at, "[%s] train_interpolation: give "
				    "either it or interpolation, not both", s->text);
		p->train_interpolation = v;
		if (v != TI_RANDOM)
			p->interpolation = v; /* resize_filter: bilinear 0, bicubic 1 */
	}
	e = cfg_find_entry(s, "auto_augment");
	if (e && policy_parse_aa(p->auto_augment, &p->aa, why, sizeof(why)))
		return cfg_fail(ld, e->at, "[%s] auto_augment: %s, got '%s'", s->text,
				why, p->auto_augment);
	if (p->aa_fill == FILL_NOISE)
		return cfg_fail(ld, cfg_entry_at(s, "aa_fill"), "[%s] aa_fill: must be "
				"mean or 0..255, got 'noise'", s->text);
	e = cfg_find_entry(s, "color_jitter");
	if (e && policy_parse_jitter(p->color_jitter, p->jitter, why, sizeof(why)))
		return cfg_fail(ld, e->at, "[%s] color_jitter: %s, got '%s'", s->text,
				why, p->color_jitter);
	/* timm: an auto_augment policy other than 3a switches ColorJitter off */
	p->jitter_on = (p->jitter[0] > 0 || p->jitter[1] > 0 || p->jitter[2] > 0 ||
			p->jitter[3] > 0) && (p->aa.kind == AA_NONE || p->aa.kind == AA_3A);
	if (p->remin > p->remax)
		return cfg_fail(ld, cfg_entry_at(s, "remin"), "[%s] remin: must be <= remax "
				"(%g), got '%g'", s->text, p->remax, p->remin);
	return 0;
}

/* An eval pipeline: no augmentation key, crop = center, and the eval
 * defaults of the keys left out (crop, flip, shuffle). */
static int check_eval(struct loader *ld, struct section *s)
{
	struct pipeline_cfg *p = s->base;
	const struct entry *e;
	int rc;

	for (int i = 0; i < s->n_entries; i++) {
		e = &s->entries[i];
		if (e->opt->flags & F_AUG)
			return cfg_fail(ld, e->at, "[%s] %s: an eval pipeline "
					"takes no augmentation keys", s->text,
					e->opt->key);
	}
	e = cfg_find_entry(s, "crop");
	if (e && p->crop != CROP_CENTER)
		return cfg_fail(ld, e->at, "[%s] crop: an eval pipeline must "
				"use center, got '%s'", s->text,
				cfg_word_name(cfg_kw_crop, p->crop));
	/* the eval defaults of the keys left out (crop, flip, shuffle) */
	for (int i = 0; i < config_n_options; i++) {
		const struct option *o = &config_options[i];

		if (o->sec != SEC_PIPELINE || !o->def_eval ||
		    cfg_find_entry(s, o->key))
			continue;
		rc = cfg_set_value(ld, s, o, o->def_eval, s->at);
		if (rc)
			return rc;
	}
	return 0;
}

/* crop = center takes resize (default: size / 0.875), random_resized
 * takes scale and ratio; neither takes the other's keys. */
static int check_crop(struct loader *ld, struct section *s)
{
	struct pipeline_cfg *p = s->base;
	const struct entry *e;

	if (p->crop != CROP_CENTER) {
		e = cfg_find_entry(s, "resize");
		if (e)
			return cfg_fail(ld, e->at, "[%s] resize: only allowed with "
					"crop = center", s->text);
		p->resize = 0;
	} else {
		static const char *const rrc_keys[] = { "scale", "ratio" };

		for (size_t i = 0; i < 2; i++) {
			e = cfg_find_entry(s, rrc_keys[i]);
			if (e)
				return cfg_fail(ld, e->at, "[%s] %s: only used with "
						"crop = random_resized", s->text,
						rrc_keys[i]);
		}
		if (p->resize == 0) {
			p->resize = (uint32_t)lround(p->size / AUTO_CROP_PCT);
		} else if (p->resize < p->size) {
			return cfg_fail(ld, cfg_entry_at(s, "resize"), "[%s] resize: must "
					"be >= size (%u), got '%u'", s->text,
					p->size, p->resize);
		}
	}
	return 0;
}

static int check_pipeline(struct loader *ld, struct section *s)
{
	config_t *cfg = ld->cfg;
	struct pipeline_cfg *p = s->base;
	int rc;

	if (p->eval) {
		rc = check_eval(ld, s);
		if (rc)
			return rc;
	}
	rc = check_crop(ld, s);
	if (rc)
		return rc;

	p->has_cutmix_minmax = cfg_find_entry(s, "cutmix_minmax") != NULL;
	if (!p->has_cutmix_minmax)
		p->cutmix_minmax[0] = p->cutmix_minmax[1] = 0;
	else if (p->cutmix_alpha == 0)
		p->cutmix_alpha = 1.0; /* as timm: minmax means CutMix */

	if (p->mode == MIX_PAIR && p->partner == PARTNER_ROLL)
		return cfg_fail(ld, cfg_entry_at(s, "partner"), "[%s] partner: must be "
				"permute or flip with mode = pair (roll is not a "
				"pairing), got 'roll'", s->text);

	rc = check_recipes(ld, s);
	if (rc)
		return rc;

	p->dataset = -1;
	for (int i = 0; i < cfg->n_datasets; i++)
		if (!strcmp(cfg->datasets[i].name, p->dataset_name))
			p->dataset = i;
	if (p->dataset < 0)
		return cfg_fail(ld, cfg_entry_at(s, "dataset"), "[%s] dataset: must name "
				"a dataset section ([dataset] or [dataset.NAME]), "
				"got '%s'", s->text, p->dataset_name);
	return 0;
}

/* CURVE needs the daemon's key pair and the clients' public keys. */
static int check_security(struct loader *ld, struct section *s)
{
	struct security_cfg *k = s->base;

	if (k->curve_secret_key_file && !k->authorized_keys)
		return cfg_fail(ld, cfg_entry_at(s, "curve_secret_key_file"), "[%s] "
				"curve_secret_key_file: needs authorized_keys too "
				"(set both or neither)", s->text);
	if (k->authorized_keys && !k->curve_secret_key_file)
		return cfg_fail(ld, cfg_entry_at(s, "authorized_keys"), "[%s] "
				"authorized_keys: needs curve_secret_key_file too "
				"(set both or neither)", s->text);
	return 0;
}

/* check() each section of this kind, in file order; the first error wins. */
static int check_each(struct loader *ld, enum sec_kind kind,
		      int (*check)(struct loader *, struct section *))
{
	for (int i = 0; i < ld->n_secs; i++) {
		if (ld->secs[i].kind != kind)
			continue;
		int rc = check(ld, &ld->secs[i]);

		if (rc)
			return rc;
	}
	return 0;
}

/* One source per dataset (root, shards or pack), and only the keys that
 * go with it. */
static int check_dataset(struct loader *ld, struct section *s)
{
	const struct dataset_cfg *dc = s->base;

	if (!dc->root && !dc->shards && !dc->pack)
		return cfg_fail(ld, s->at, "[%s] root: required key is "
				"missing", s->text);  /* or shards */
	if (!!dc->root + !!dc->shards + !!dc->pack > 1)
		return cfg_fail(ld, s->at, "[%s] root, shards and pack: give one "
				"of them, not both", s->text);
	if (dc->pack && (dc->manifest || dc->index_cache || dc->class_names))
		return cfg_fail(ld, s->at, "[%s] pack: the pack's index names "
				"the samples and classes (no manifest, index_cache "
				"or class_names)", s->text);
	if (dc->shards && dc->manifest)
		return cfg_fail(ld, s->at, "[%s] manifest: not with shards "
				"(the tar members name the samples)", s->text);
	if (!dc->shards && (dc->index_cache || dc->class_names))
		return cfg_fail(ld, s->at, "[%s] %s: only with shards", s->text,
				dc->index_cache ? "index_cache" : "class_names");
	return 0;
}

int cfg_check_all(struct loader *ld)
{
	config_t *cfg = ld->cfg;
	struct server_cfg *sv = &cfg->server;
	struct where file = { 0, NULL };
	int rc;

	if (sv->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		sv->workers = n < 1 ? 1 : n > 1024 ? 1024 : (uint32_t)n;
	}
	/* the decode budget: a quarter block per pixel of the largest image
	 * allowed (a 4:4:4 progressive file of the standard 10 scans needs
	 * 0.22, a 4:2:0 one 0.125, baseline 4:2:0 0.023) */
	if (sv->max_scan_blocks == 0)
		sv->max_scan_blocks = sv->max_pixels / 4 ? sv->max_pixels / 4 : 1;
	if (cfg->n_datasets == 0)
		return cfg_fail(ld, file, "no dataset section (add [dataset] with "
				"root = PATH)");
	rc = check_each(ld, SEC_DATASET, check_dataset);
	if (rc)
		return rc;
	if (cfg->n_pipelines == 0)
		return cfg_fail(ld, file, "no pipeline section (add [pipeline.NAME])");
	rc = check_each(ld, SEC_PIPELINE, check_pipeline);
	if (rc)
		return rc;
	return check_each(ld, SEC_SECURITY, check_security);
}

