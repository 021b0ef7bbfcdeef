"""Python client for cutmixd, the augmenting JPEG batch server.

    import cutmixd
    with cutmixd.Client(["tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"],
                        pipeline="train", rank=0, world=1) as c:
        info = c.info()                    # dict: dataset_size, num_classes, ...
        for b in c.epoch(3):               # batches 0.. of epoch 3, in order
            x, y, meta = b.images, b.labels, b.meta

One daemon or several. A batch is a pure function of (config, seed,
pipeline, epoch, rank, world, batch index), so any daemon with the same
config and data can serve any batch. The client keeps one DEALER socket per
endpoint (it knows which daemon each request went to) and spreads the
``window`` of requests over the daemons that are reachable, least
outstanding first; batches are handed out in batch order from a reorder
buffer whatever daemon served them.

Failures. A request that has had no reply for ``resend_timeout`` seconds
(default 3; longer for a daemon whose replies are slow anyway, see
``Client``) is sent again to another daemon; the first reply for a batch
wins, later duplicates are dropped by request_id. Requests on a connection
that drops (daemon killed, restarted) are re-sent at once. A daemon that
stays silent is marked down and probed with a small INFO request after a
back-off (0.1 s doubling to 2 s); it is used again as soon as it answers.
Nothing waits longer than ``timeout`` seconds (default 60) for the batch it
needs: then :class:`cutmixd.TimeoutError` names every endpoint and its state.

Every reply carries the daemon's config digest. With several endpoints the
first reply fixes it (or ``digest=`` does); a daemon whose digest differs is
refused from then on and :class:`cutmixd.DigestMismatch` names it. A client
of a single daemon follows that daemon through a config reload unless
``pin_digest=True``.

Security: ``server_key=``, ``public_key=``, ``secret_key=`` (Z85 strings,
see :func:`load_keypair`) switch every connection to ZeroMQ CURVE.

Images, labels and metadata are zero-copy numpy views on the received
ZeroMQ frames (the frames belong to the Batch alone, so writing into them in
place is allowed; the memory lives as long as any view of it).
:func:`reuse_receive_buffers` (opt-in, process-wide) lets malloc keep batch
memory for the next batches instead of faulting fresh pages in for each. A Client is
not thread safe and must not cross a fork(): create one per thread/process.
"""

from . import _wire  # noqa: F401
from ._batch import Batch
from ._client import (  # noqa: F401  (re-exported)
                      DEFAULT_RESEND_TIMEOUT, DEFAULT_TIMEOUT, PROTOCOL_VERSION,
                      WINDOW_PER_ENDPOINT, Client)
from ._errors import (DaemonError, DigestMismatch, EpochChanged, Error, KeyFileError,
                      ProtocolError, TimeoutError, VersionError)
from ._keys import curve_keypair, load_keypair, load_public_key
from ._tuning import reuse_receive_buffers
from ._version import __version__  # noqa: F401  (the VERSION file)
from ._wire import (  # noqa: F401  (re-exported)
    META_DTYPE,
    META_DTYPE_V1,
    META_SIZE,
    OP_TABLE,
    OP_CUTMIX,
    OP_MIXUP,
    OP_NAMES,
    OP_NONE,
    SAMPLE_OK,
    SAMPLE_REPLACED,
    Status,
    meta_dtype,
    status_name,
)

__all__ = [
    "Client", "Batch", "Error", "DaemonError", "ProtocolError", "VersionError",
    "TimeoutError", "DigestMismatch", "EpochChanged", "KeyFileError", "Status", "META_DTYPE",
    "META_DTYPE_V1", "OP_TABLE",
    "PROTOCOL_VERSION", "META_SIZE", "OP_NONE", "OP_CUTMIX", "OP_MIXUP", "OP_NAMES",
    "SAMPLE_OK", "SAMPLE_REPLACED", "meta_dtype", "status_name", "load_keypair",
    "load_public_key", "curve_keypair", "reuse_receive_buffers",
]


# Public classes print as cutmixd.X (where users import them from), not as
# the private module that defines them.
for _cls in (Client, Batch, Error, DaemonError, ProtocolError, VersionError, TimeoutError,
             DigestMismatch, EpochChanged, KeyFileError):
    _cls.__module__ = __name__
del _cls
