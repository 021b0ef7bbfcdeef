/*
 * config.h — the daemon's configuration: INI file (inih) plus --set
 * overrides, validated against one table of options.
 *
 * The structs below are plain data, filled by config_load() and read-only
 * afterwards (a SIGHUP reload builds a new config_t and swaps it in).
 */
#ifndef CUTMIXD_CONFIG_H
#define CUTMIXD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_NAME_MAX     32 /* pipeline / dataset names, incl. NUL */
#define CONFIG_MAX_ENDPOINTS 8
#define CONFIG_MAX_PIPELINES 16
#define CONFIG_MAX_DATASETS  16
#define CONFIG_MAX_HOLES     8  /* == WIRE_MAX_HOLES */
#define CONFIG_MAX_SIZE      8192
#define CONFIG_LINE_MAX      16384 /* longest line of a config file */
#define CONFIG_TEXT_MAX      64 /* auto_augment / color_jitter text, incl. NUL */
#define CONFIG_MAX_ERASE     8  /* == WIRE_MAX_ERASE */

enum crop_mode   { CROP_RANDOM_RESIZED = 0, CROP_CENTER = 1 };
enum fill_mode   { FILL_VALUE = 0, FILL_MEAN = 1, FILL_NOISE = 2 };
enum mix_mode    { MIX_BATCH = 0, MIX_PAIR = 1, MIX_ELEM = 2 };
enum partner_rule { PARTNER_PERMUTE = 0, PARTNER_FLIP = 1, PARTNER_ROLL = 2 };
enum out_layout  { LAYOUT_NHWC = 0, LAYOUT_NCHW = 1 };  /* == wire_layout */
enum out_dtype   { DTYPE_UINT8 = 0, DTYPE_FLOAT32 = 1 }; /* == wire_dtype */
enum on_error    { ON_ERROR_REPLACE = 0, ON_ERROR_FAIL = 1 };
/* auto_augment (policy.h): off, timm RandAugment "rand-m9-...",
 * TrivialAugmentWide, AutoAugment ImageNet (torchvision), DeiT III 3-Augment,
 * timm's AutoAugment v0 */
enum aa_kind     { AA_NONE = 0, AA_RAND = 1, AA_TA_WIDE = 2, AA_ORIGINAL = 3, AA_3A = 4,
		   AA_V0 = 5 };
enum erase_mode  { ERASE_CONST = 0, ERASE_RAND = 1, ERASE_PIXEL = 2 }; /* == wire */
enum train_interp { TI_UNSET = -1, TI_BILINEAR = 0, TI_BICUBIC = 1, TI_RANDOM = 2 };

/* auto_augment, parsed (policy_parse_aa). */
struct aa_spec {
	enum aa_kind kind;
	uint32_t n;               /* rand: ops per sample (-n, default 2) */
	double m;                 /* rand: magnitude 0..mmax (-m) */
	double mstd;              /* rand: magnitude std (-mstd; > 100: uniform) */
	double mmax;              /* rand: upper clip (-mmax, default 10) */
	double p;                 /* rand: per-op probability (-p, default 0.5) */
	bool inc;                 /* rand: the "increasing" op list (-inc1) */
};

struct server_cfg {
	char *endpoints[CONFIG_MAX_ENDPOINTS]; /* "endpoint = a, b" */
	int n_endpoints;          /* default: tcp://127.0.0.1:5555 */
	uint32_t workers;         /* 0 in the file = online CPUs (resolved) */
	uint64_t seed;
	uint32_t max_inflight;    /* batches being computed at once; 0 = auto */
	uint32_t max_client_window; /* outstanding requests per client */
	uint32_t max_clients;
	uint64_t max_pixels;      /* declared width*height above this: refused */
	uint64_t max_file_bytes;
	uint64_t max_scan_blocks; /* decode budget (decode.h); 0 in the file =
				   * max_pixels / 4 (resolved) */
	uint64_t max_batch_bytes; /* batch bytes x max_inflight above this:
				   * refused (budget.h); 0 = auto */
	enum on_error on_decode_error;
	uint32_t idle_timeout_s;  /* forget a silent client after this */
	int log_level;            /* enum log_level */
	char *metrics;            /* HTTP /metrics at HOST:PORT; NULL = off */
	uint64_t batch_cache_mb;  /* batch cache budget in MiB; 0 = off */
	bool shm;                 /* shared-memory sessions for local clients */
	uint64_t shm_max_mb;      /* all sessions together, MiB */
	uint32_t shm_slots;       /* per session; 0 = max_client_window + 2 */
	uint32_t tcp_sndbuf_kb;   /* SO_SNDBUF of tcp connections, KiB; 0 = OS
				   * default (kernel autotuning) */
};

struct dataset_cfg {
	char name[CONFIG_NAME_MAX]; /* "default" for [dataset] */
	char *root;               /* absolute or relative to the config file */
	char *manifest;           /* NULL: scan root/CLASS/... */
	bool follow_symlinks;
	bool digest_contents;     /* hash file bytes into the digest */
	char *shards;             /* WebDataset tar pattern (shards.h), no root */
	char *index_cache;        /* folder for shard index caches, or NULL */
	char *class_names;        /* shards: one class name per line, or NULL */
	char *pack;               /* DIR/index.cmxpack written by cutmixd pack */
	int line;                 /* line of the section header */
};

struct pipeline_cfg {
	char name[CONFIG_NAME_MAX];
	int line;                 /* line of the section header */
	int dataset;              /* index into config.datasets */
	char dataset_name[CONFIG_NAME_MAX]; /* "dataset = NAME" as resolved */
	bool eval;
	bool shuffle;
	bool drop_last;
	uint32_t batch_size;
	uint32_t size;            /* output is size x size */
	enum crop_mode crop;
	uint32_t resize;          /* shorter side before a center crop */
	double scale[2];          /* random-resized crop area range */
	double ratio[2];          /* random-resized crop aspect range */
	double flip;              /* probability of a horizontal flip */
	bool dct_scale;           /* let libjpeg downscale by 1/2,1/4,1/8 */
	int interpolation;        /* enum resize_filter: bilinear, bicubic */

	double cutout_prob;
	uint32_t cutout_holes;
	uint32_t cutout_size[2];  /* min, max side in output pixels; 0 = off */
	enum fill_mode cutout_fill;
	uint8_t cutout_value;     /* FILL_VALUE */

	/* recipes (docs/AUGMENTATIONS.md): after the flip, in this order */
	int train_interpolation;  /* enum train_interp; set: overrides interpolation */
	char auto_augment[CONFIG_TEXT_MAX]; /* as written; "" = off */
	struct aa_spec aa;        /* auto_augment parsed */
	enum fill_mode aa_fill;   /* FILL_MEAN or FILL_VALUE (geometric ops) */
	uint8_t aa_fill_value;
	char color_jitter[CONFIG_TEXT_MAX]; /* as written; "" or "0" = off */
	double jitter[4];         /* brightness, contrast, saturation, hue; 0 = off */
	bool jitter_on;           /* false when auto_augment (not 3a) disables it */
	double reprob;            /* RandomErasing probability, 0 = off */
	enum erase_mode remode;
	uint32_t recount;         /* up to this many boxes (1..8) */
	double remin, remax;      /* area fraction range */
	uint32_t aug_repeats;     /* repeated augmentation; 0/1 = off */

	double mixup_alpha;
	double cutmix_alpha;
	bool has_cutmix_minmax;
	double cutmix_minmax[2];
	double prob;              /* chance a batch/pair/element is mixed */
	double switch_prob;       /* CutMix instead of MixUp when both on */
	enum mix_mode mode;
	enum partner_rule partner;
	bool correct_lam;
	double label_smoothing;
	uint32_t off_epoch;       /* 0 = never; else no mixing from it on */

	enum out_layout layout;
	enum out_dtype dtype;
	double mean[3];           /* 0..1 units, as torchvision */
	double std[3];
};

/* [security]: CURVE encryption and client authentication (both keys or
 * neither; not in the digest: they do not change a batch). */
struct security_cfg {
	char *curve_secret_key_file; /* NULL: no CURVE, clients in the clear */
	char *authorized_keys;    /* a file of public keys, or a folder of *.pub */
	int line;                 /* line of the section header; 0: none */
};

typedef struct config {
	char *path;               /* the file as given */
	struct server_cfg server;
	struct security_cfg security;
	struct dataset_cfg datasets[CONFIG_MAX_DATASETS];
	int n_datasets;
	struct pipeline_cfg pipelines[CONFIG_MAX_PIPELINES];
	int n_pipelines;
} config_t;

/*
 * Parse `path`, then apply each "section.key=value" of `sets` (the
 * pipeline section of "pipeline.train.size=1" is "pipeline.train").
 * Returns 0 and a new config in *out, or -EINVAL (bad content), -ENOENT /
 * -EACCES (file), -ENOMEM with a one-line message in err:
 *   "train.ini:12: [pipeline.train] size: must be 1..8192, got '0'"
 * Overrides report "--set pipeline.train.size=0: ..." instead of a line.
 * Relative paths (dataset root and manifest, key files) are resolved
 * against the config file's folder. Key files are not read here (keys.h).
 * Not thread safe: it sets inih's process-wide options for the parse
 * (and restores them), so call it from one thread at a time.
 */
int config_load(const char *path, char *const *sets, int n_sets,
		config_t **out, char *err, size_t errlen);
void config_destroy(config_t **cfg);

/* Index of the pipeline called `name`, or -1. */
int config_find_pipeline(const config_t *cfg, const char *name);

/*
 * Canonical text of every setting that can change a batch's bytes (not
 * endpoints, workers or limits), one "section.key=value" per line, in a
 * fixed order. The config digest hashes this plus the dataset index.
 * Returns a malloc'd string or NULL.
 */
char *config_canonical(const config_t *cfg);

/* True when [security] turns CURVE on (both of its keys are set). */
bool config_has_curve(const config_t *cfg);

/* True when the pipeline may flip, cut out or mix (used for eval checks). */
bool config_pipeline_augments(const struct pipeline_cfg *p);

/* One row of the options table, for generated documentation (the
 * cutmixd.ini(5) man page): what the key takes, as in error messages. */
struct config_option_doc {
	const char *section;      /* "server", "security", "dataset", "pipeline.NAME" */
	const char *key;
	char takes[200];          /* "1..1024", "true or false", ... */
	const char *def;          /* NULL: no default */
	const char *def_eval;     /* default in an eval pipeline, or NULL */
	bool required, digest, aug;
};
int config_option_count(void);
/* Row i (0..count-1) into *d. 0, or -EINVAL. */
int config_option_get(int i, struct config_option_doc *d);

#endif
