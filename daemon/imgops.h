/*
 * imgops.h — the per-sample image operations of the augmentation recipes
 * (RandAugment, TrivialAugment, AutoAugment, 3-Augment, ColorJitter), each
 * a pure function of its pixels and arguments, on packed uint8 RGB (HWC).
 *
 * Pixel semantics are torchvision 0.14's functional ops on a uint8 CHW
 * tensor: imgop_apply(img, {op, interp, magnitude, fill}) gives what
 * torchvision.transforms.autoaugment._apply_op(img, NAME, magnitude,
 * interpolation, fill) gives (NAME = imgop_name(op)); the ops torchvision
 * does not have are documented in docs/AUGMENTATIONS.md. `magnitude` is
 * exactly _apply_op's argument: 1 + magnitude is the enhance factor,
 * pixels for translations, degrees for Rotate, the shear coefficient for
 * the shears, bits for Posterize, the threshold for Solarize, the hue
 * shift for Hue.
 *
 * The codes are the wire protocol's op table (proto/PROTOCOL.md): never
 * renumber, only append.
 */
#ifndef CUTMIXD_IMGOPS_H
#define CUTMIXD_IMGOPS_H

#include <stddef.h>
#include <stdint.h>

enum imgop {
	IMGOP_IDENTITY = 0,
	IMGOP_SHEAR_X = 1,
	IMGOP_SHEAR_Y = 2,
	IMGOP_TRANSLATE_X = 3,
	IMGOP_TRANSLATE_Y = 4,
	IMGOP_ROTATE = 5,
	IMGOP_BRIGHTNESS = 6,
	IMGOP_COLOR = 7,          /* saturation */
	IMGOP_CONTRAST = 8,
	IMGOP_SHARPNESS = 9,
	IMGOP_POSTERIZE = 10,
	IMGOP_SOLARIZE = 11,
	IMGOP_AUTOCONTRAST = 12,
	IMGOP_EQUALIZE = 13,
	IMGOP_INVERT = 14,
	IMGOP_HUE = 15,           /* F.adjust_hue(img, magnitude) */
	IMGOP_SOLARIZE_ADD = 16,  /* timm: +magnitude below 128, clipped */
	IMGOP_GRAYSCALE = 17,     /* F.rgb_to_grayscale(img, 3) */
	IMGOP_GAUSSIAN_BLUR = 18, /* magnitude = sigma */
	IMGOP_COUNT
};

enum imgop_interp { IMGOP_NEAREST = 0, IMGOP_BILINEAR = 1 };

struct imgop_args {
	uint8_t op;        /* enum imgop */
	uint8_t interp;    /* enum imgop_interp (geometric ops only) */
	double magnitude;
	uint8_t fill[3];   /* geometric ops: value of pixels from outside */
};

/* torchvision's name for the op ("ShearX", ...); NULL when out of range. */
const char *imgop_name(unsigned op);

/* Scratch bytes imgop_apply needs for a W x H image (any op). */
size_t imgop_scratch_bytes(int W, int H);

/*
 * Apply one op in place to a W x H RGB image with row stride `stride`.
 * `scratch` holds imgop_scratch_bytes(W, H) bytes. Returns 0, or -EINVAL
 * for an unknown op or an argument outside the op's domain.
 */
int imgop_apply(uint8_t *img, int W, int H, size_t stride,
		const struct imgop_args *a, uint8_t *scratch);

#endif
