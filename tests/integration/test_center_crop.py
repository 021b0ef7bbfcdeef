"""crop = center is byte-identical to torchvision's PIL path, Resize(resize)
then CenterCrop(size), on images of many sizes (down- and upscaled),
bilinear and bicubic, when dct_scale is off. It used to differ by 1 on
about 0.1% of the values of most images: the folded source box was
resampled with its own coefficients instead of those of the whole resize.
The reference is Pillow's resize + crop (what torchvision calls), and
torchvision itself where it is installed."""

import numpy as np
import pytest
from PIL import Image

import gen_dataset
from helpers import Dataset

FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@pytest.fixture(scope="module")
def ds_sizes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds_center")
    s = gen_dataset.make_dataset(root, classes=3, per_class=20, sizes="random",
                                 subsampling="mixed", gray_fraction=0.1, seed=17)
    return Dataset(root, s)


def pil_center(path, resize, size, interp):
    """torchvision.transforms.Resize(resize) + CenterCrop(size) on a PIL
    image, written out: the shorter side to `resize`, the long side
    int(resize * long / short), then the crop at round((new - size) / 2)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w <= h:
            nw, nh = resize, int(resize * h / w)
        else:
            nw, nh = int(resize * w / h), resize
        im = im.resize((nw, nh), FILTERS[interp])
        top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
        return np.asarray(im.crop((left, top, left + size, top + size)))


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
@pytest.mark.parametrize("size", [64, 224])
def test_center_crop_equals_pil_resize_then_crop(daemon, ds_sizes, size, interp):
    resize = int(round(size / 0.875))
    pipe = {"v": dict(eval=True, batch_size=20, size=size, resize=resize,
                      interpolation=interp, dct_scale=False)}
    d = daemon(ds_sizes.config(), pipe)
    try:
        import torchvision.transforms as T
        tv = T.Compose([T.Resize(resize, interpolation=getattr(
            T.InterpolationMode, interp.upper())), T.CenterCrop(size)])
    except ImportError:
        tv = None
    differ = []
    with d.client("v") as c:
        for k in range(c.info()["batches_per_epoch"]):
            b = c.batch(0, k)
            for i, m in enumerate(b.meta):
                path = ds_sizes.ref.path(m["source"])
                exp = pil_center(path, resize, size, interp)
                if not np.array_equal(b.images[i], exp):
                    n = int(np.count_nonzero(b.images[i] != exp))
                    differ.append((ds_sizes.samples[int(m["source"])].path,
                                   (int(m["src_w"]), int(m["src_h"])), n))
                elif tv is not None and k == 0:
                    with Image.open(path) as im:
                        assert np.array_equal(b.images[i], np.asarray(tv(im.convert("RGB"))))
    assert not differ, "%d of %d images differ from PIL: %s" % (
        len(differ), len(ds_sizes), differ[:5])
