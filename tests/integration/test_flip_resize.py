"""The flip folded into the resize (resize.h RESIZE_FLIP) against PIL: every
random-resized sample equals PIL's crop + resize of its box, mirrored when its
metadata says flip, for the bilinear and the bicubic filter. Images of
mixed sizes and subsampling (ds_mixed), DCT scaling off so PIL's plain
decode is the reference."""

import numpy as np
import pytest
from PIL import Image

from helpers import module_daemon

S = 40
BASE = dict(batch_size=11, size=S, crop="random_resized", scale="0.08,1.0", flip=0.5,
            dct_scale="false", shuffle=True)
PIPELINES = {"bilinear": dict(BASE, interpolation="bilinear"),
             "bicubic": dict(BASE, interpolation="bicubic")}
FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@pytest.fixture(scope="module")
def d(tmp_path_factory, ds_mixed):
    dm = module_daemon(tmp_path_factory, "flip", ds_mixed.config(), PIPELINES)
    yield dm
    dm.stop()


@pytest.mark.parametrize("pipe", sorted(PIPELINES))
def test_flipped_samples_equal_pil(d, ds_mixed, pipe):
    flips = 0
    with d.client(pipe) as c:
        batches = list(c.epoch(0))
    n = 0
    for b in batches:
        for i, m in enumerate(b.meta):
            with Image.open(ds_mixed.ref.path(m["source"])) as im:
                # torchvision's resized_crop: crop, then resize (taps stop at the box)
                box = tuple(int(v) for v in m["crop"])
                assert list(box) == [float(v) for v in m["crop"]]
                want = im.convert("RGB").crop(box).resize((S, S), FILTERS[pipe])
            if m["flip"]:
                want = want.transpose(Image.FLIP_LEFT_RIGHT)
                flips += 1
            got = b.images[i]
            assert np.array_equal(got, np.asarray(want)), \
                "sample %d (source %d, crop %s, flip %d) differs from PIL" % (
                    n, m["source"], list(m["crop"]), m["flip"])
            n += 1
    assert n == len(ds_mixed)
    assert 0 < flips < n  # both kinds were checked
