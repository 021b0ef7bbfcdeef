"""The cutmixd wire format (proto/wire.h) in Python.

Every integer is little-endian; the layouts below are the byte offsets of the
top comment of proto/wire.h, written as explicit ``struct`` formats so that a
change there shows up as a size mismatch here.

    request (80):  0 magic u32 | 4 version u16 | 6 type u16 | 8 flags u32 |
                   12 batch u32 | 16 request_id u64 | 24 epoch u32 |
                   28 rank u32 | 32 world u32 | 36 r u32 |
                   40 pipeline char[32] | 72 session u64
    reply (128):   0 magic u32 | 4 version u16 | 6 type u16 | 8 status u32 |
                   12 flags u32 | 16 request_id u64 | 24 epoch u32 |
                   28 rank u32 | 32 world u32 | 36 batch u32 |
                   40 batch_size u32 | 44 height u32 | 48 width u32 |
                   52 channels u32 | 56 layout u8 | 57 dtype u8 |
                   58 meta_size u16 | 60 num_classes u32 |
                   64 batches_per_epoch u32 | 68 r u32 | 72 digest u8[32] |
                   104 body_bytes u64[3]
    meta (224 in version 1, 488 in version 2): see META_FIELDS_V1/V2
    shm open body (104): 0 session u64 | 8 slots u32 | 12 r u32 |
                   16 slot_size u64 | 24 token u8[32] | 56 r u8[8] |
                   64 name char[40]
    shm batch descriptor (64): 0 session u64 | 8 slot u32 |
                   12 generation u32 | 16 (off u64, len u64) x 3
                   (images, labels, meta; offsets within the slot)
"""

import enum
import struct
from collections import namedtuple

import numpy as np

REQUEST_MAGIC = 0x51584D43  # "CMXQ" as bytes on the wire
REPLY_MAGIC = 0x52584D43  # "CMXR"
VERSION = 2  # spoken by this client
VERSIONS = (1, 2)  # reply versions this client reads

REQUEST_SIZE = 80
REPLY_SIZE = 128
META_SIZE_V1 = 224
META_SIZE_V2 = 488
META_SIZE = META_SIZE_V2  # of VERSION
PIPELINE_MAX = 32  # bytes incl. NUL padding: names <= 31 bytes
DIGEST_SIZE = 32
MAX_HOLES = 8
MAX_OPS = 8  # per-sample ops recorded (version 2)
MAX_ERASE = 8  # RandomErasing boxes recorded (version 2)

# Message types.
INFO = 1
BATCH = 2
STATS = 3
SHM_OPEN = 4
SHM_RELEASE = 5
ERROR = 127

# Request flags.
FLAG_EXPECT_EVAL = 0x1
FLAG_SHM = 0x2  # batch: reply through the shared-memory session `session`
# Reply flags.
RFLAG_LAST = 0x1
RFLAG_SHM = 0x2  # the body is one shm batch descriptor

# Layouts, dtypes, ops, sample status.
NHWC, NCHW = 0, 1
UINT8, FLOAT32 = 0, 1
OP_NONE, OP_CUTMIX, OP_MIXUP = 0, 1, 2
OP_NAMES = {OP_NONE: "none", OP_CUTMIX: "cutmix", OP_MIXUP: "mixup"}
SAMPLE_OK, SAMPLE_REPLACED = 0, 1

# Per-sample op codes of the version 2 record (daemon/imgops.h, PROTOCOL.md
# section 7): torchvision _apply_op names where torchvision has the op.
OP_TABLE = {
    0: "Identity", 1: "ShearX", 2: "ShearY", 3: "TranslateX", 4: "TranslateY",
    5: "Rotate", 6: "Brightness", 7: "Color", 8: "Contrast", 9: "Sharpness",
    10: "Posterize", 11: "Solarize", 12: "AutoContrast", 13: "Equalize",
    14: "Invert", 15: "Hue", 16: "SolarizeAdd", 17: "Grayscale", 18: "GaussianBlur",
}
INTERP_NAMES = {0: "nearest", 1: "bilinear"}
ERASE_CONST, ERASE_RAND, ERASE_PIXEL = 0, 1, 2
ERASE_NAMES = {ERASE_CONST: "const", ERASE_RAND: "rand", ERASE_PIXEL: "pixel"}

LAYOUT_NAMES = {NHWC: "nhwc", NCHW: "nchw"}
DTYPES = {UINT8: np.dtype(np.uint8), FLOAT32: np.dtype("<f4")}


class Status(enum.IntEnum):
    """enum wire_status: the code carried by an ERROR reply."""

    OK = 0
    MALFORMED = 1
    VERSION = 2
    UNKNOWN_TYPE = 3
    NO_PIPELINE = 4
    BAD_SHARD = 5
    BATCH_RANGE = 6
    BUSY = 7
    NOT_EVAL = 8
    DECODE = 9
    INTERNAL = 10
    SHUTTING_DOWN = 11
    EPOCH_RANGE = 12


def status_name(code):
    try:
        return Status(code).name
    except ValueError:
        return "E%d" % code


_REQUEST = struct.Struct("<IHHIIQIIII32sQ")
SHM_OPEN_BODY = struct.Struct("<QI4xQ32s8x40s")
SHM_DESC = struct.Struct("<QII6Q")
assert SHM_OPEN_BODY.size == 104 and SHM_DESC.size == 64
_REPLY = struct.Struct("<IHHIIQIIIIIIIIBBHIII32s3Q")
assert _REQUEST.size == REQUEST_SIZE
assert _REPLY.size == REPLY_SIZE

Request = namedtuple(
    "Request",
    "magic version type flags batch request_id epoch rank world reserved pipeline session",
)

Reply = namedtuple(
    "Reply",
    "magic version type status flags request_id epoch rank world batch "
    "batch_size height width channels layout dtype meta_size num_classes "
    "batches_per_epoch reserved digest body_bytes",
)


def encode_pipeline(name):
    raw = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    if len(raw) >= PIPELINE_MAX:
        raise ValueError("pipeline name %r: longer than %d bytes" % (name, PIPELINE_MAX - 1))
    if b"\0" in raw:
        raise ValueError("pipeline name %r: contains a NUL byte" % (name,))
    return raw


def encode_request(type, request_id, pipeline="", epoch=0, batch=0, rank=0, world=1,
                   flags=0, version=VERSION, magic=REQUEST_MAGIC, session=0):
    """Bytes of one request frame. Extra keywords let tests forge bad ones."""
    pl = pipeline if isinstance(pipeline, (bytes, bytearray)) else encode_pipeline(pipeline)
    return _REQUEST.pack(magic, version, type, flags, batch, request_id, epoch,
                         rank, world, 0, bytes(pl).ljust(PIPELINE_MAX, b"\0")[:PIPELINE_MAX],
                         session)


def decode_request(buf):
    if len(buf) != REQUEST_SIZE:
        raise ValueError("request: %d bytes, expected %d" % (len(buf), REQUEST_SIZE))
    f = list(_REQUEST.unpack(bytes(buf)))
    f[-2] = f[-2].split(b"\0", 1)[0].decode("utf-8", "replace")
    return Request(*f)


def encode_reply(type, request_id, status=0, flags=0, epoch=0, rank=0, world=1, batch=0,
                 batch_size=0, height=0, width=0, channels=0, layout=0, dtype=0,
                 meta_size=0, num_classes=0, batches_per_epoch=0, digest=b"",
                 body_bytes=(0, 0, 0), version=VERSION, magic=REPLY_MAGIC):
    """Bytes of one reply header (used by the fake server in the tests)."""
    bb = list(body_bytes) + [0] * (3 - len(body_bytes))
    return _REPLY.pack(magic, version, type, status, flags, request_id, epoch, rank,
                       world, batch, batch_size, height, width, channels, layout, dtype,
                       meta_size, num_classes, batches_per_epoch, 0,
                       bytes(digest).ljust(DIGEST_SIZE, b"\0")[:DIGEST_SIZE], *bb[:3])


def decode_reply(buf):
    """Parse a reply header; raises ValueError on a wrong size or magic.

    The version is *not* checked here (the caller words that error)."""
    if len(buf) != REPLY_SIZE:
        raise ValueError("reply header: %d bytes, expected %d" % (len(buf), REPLY_SIZE))
    f = _REPLY.unpack(bytes(buf))
    if f[0] != REPLY_MAGIC:
        raise ValueError("reply header: bad magic 0x%08x (expected 0x%08x)" % (f[0], REPLY_MAGIC))
    return Reply(*f[:21], body_bytes=tuple(f[21:24]))


# name, numpy type, byte offset — exactly the meta layout of proto/wire.h.
META_FIELDS_V1 = [
    ("index", "<i8", 0),
    ("source", "<i8", 8),
    ("partner", "<i8", 16),
    ("lam", "<f8", 24),
    ("label", "<i4", 32),
    ("partner_label", "<i4", 36),
    ("partner_pos", "<i4", 40),
    ("box", ("<i4", (4,)), 44),
    ("crop", ("<f4", (4,)), 60),
    ("src_w", "<i4", 76),
    ("src_h", "<i4", 80),
    ("op", "u1", 84),
    ("flip", "u1", 85),
    ("status", "u1", 86),
    ("n_holes", "u1", 87),
    ("pad", "u1", 88),
    ("holes", ("<i4", (MAX_HOLES, 4)), 96),
]

# One applied op (16 bytes): the code, the interpolation of geometric ops,
# the fill of pixels from outside, and the argument of torchvision's
# _apply_op (or the op's documented parameter).
OP_DTYPE = np.dtype({
    "names": ["op", "interp", "fill", "magnitude"],
    "formats": ["u1", "u1", ("u1", (3,)), "<f8"],
    "offsets": [0, 1, 2, 8],
    "itemsize": 16,
})

META_FIELDS_V2 = META_FIELDS_V1 + [
    ("n_ops", "u1", 224),
    ("n_erase", "u1", 225),
    ("erase_mode", "u1", 226),
    ("resize_interp", "u1", 227),
    ("ops", (OP_DTYPE, (MAX_OPS,)), 232),
    ("erase", ("<i4", (MAX_ERASE, 4)), 360),
]
META_FIELDS = META_FIELDS_V2


def meta_dtype(itemsize=META_SIZE):
    """Structured dtype of one metadata record of `itemsize` bytes: the
    version 1 fields for 224..487 bytes, the version 2 fields from 488 on
    (a later revision may grow the record; the known fields keep their
    offsets)."""
    if itemsize < META_SIZE_V1:
        raise ValueError("meta_size %d is smaller than %d" % (itemsize, META_SIZE_V1))
    fields = META_FIELDS_V2 if itemsize >= META_SIZE_V2 else META_FIELDS_V1
    return np.dtype({
        "names": [f[0] for f in fields],
        "formats": [f[1] for f in fields],
        "offsets": [f[2] for f in fields],
        "itemsize": itemsize,
    })


META_DTYPE_V1 = meta_dtype(META_SIZE_V1)
META_DTYPE = meta_dtype()
assert META_DTYPE.itemsize == META_SIZE


def encode_meta(records):
    """Bytes of metadata records given as dicts (fake server / tests)."""
    arr = np.zeros(len(records), dtype=META_DTYPE)
    for i, r in enumerate(records):
        for k, v in r.items():
            arr[i][k] = v
    return arr.tobytes()
