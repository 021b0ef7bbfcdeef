"""The exceptions of the cutmixd client (every one derives from Error)."""

from __future__ import annotations

import builtins
from typing import Optional, Union

from ._wire import Status, status_name


class Error(Exception):
    """Base class of every cutmixd client error."""


class DaemonError(Error):
    """The daemon answered a request with an ERROR reply.

    ``code`` is the wire status (a :class:`Status` when known), ``name`` its
    symbolic name ("BUSY", "NOT_EVAL", ...), ``message`` the daemon's text,
    ``endpoint`` the daemon that said it."""

    def __init__(self, code: int, message: str, endpoint: Optional[str] = None,
                 request_id: Optional[int] = None, digest: Optional[str] = None) -> None:
        self.code: Union[Status, int]
        try:
            self.code = Status(code)
        except ValueError:
            self.code = int(code)
        self.name = status_name(code)
        self.message = message
        self.endpoint = endpoint
        self.request_id = request_id
        self.digest = digest  # the daemon's config digest (hex) when it answered
        where = "cutmixd %s: " % endpoint if endpoint else "cutmixd: "
        super().__init__("%s%s (%d): %s" % (where, self.name, int(code), message))


class ProtocolError(Error):
    """A reply that does not follow the wire format."""


class VersionError(ProtocolError):
    """The daemon speaks another protocol version than this client."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 (shadowing on purpose)
    """No reply within the client's timeout."""


class DigestMismatch(Error):
    """A daemon's config digest differs from the one this client pinned (from
    the first reply, or from ``digest=``): it runs another config or other
    data, so its batches would differ. The daemon is refused from then on.

    ``endpoint`` the refused daemon, ``digest`` its digest (hex),
    ``expected`` the pinned digest, ``pinned_by`` where that came from."""

    def __init__(self, endpoint: str, digest: str, expected: str, pinned_by: str) -> None:
        self.endpoint = endpoint
        self.digest = digest
        self.expected = expected
        self.pinned_by = pinned_by
        super().__init__(
            "cutmixd %s: config digest %s differs from %s (pinned by %s): refusing "
            "this daemon; every daemon of a client must run the same config and data"
            % (endpoint, digest[:16], expected[:16], pinned_by))


class EpochChanged(Error):
    """The config digest changed in the middle of an epoch (the daemon was
    reloaded with another config or dataset): one epoch is served from one
    digest, so the client stops instead of mixing two generations (some
    samples twice, others never). Ask for the epoch again (it follows the
    new config), or give ``on_reload="restart"`` to start it over by itself.

    ``endpoint``, ``epoch``, ``batch`` (the batch that showed it),
    ``yielded`` (batches of this epoch already handed out), ``digest`` (the
    new one, hex), ``expected`` (the epoch's)."""

    def __init__(self, endpoint: str, epoch: int, batch: int, yielded: int, digest: str,
                 expected: str) -> None:
        self.endpoint, self.epoch, self.batch, self.yielded = endpoint, epoch, batch, yielded
        self.digest, self.expected = digest, expected
        super().__init__(
            "cutmixd %s: config digest changed from %s to %s in the middle of epoch %d "
            "(batch %d, after %d batches): the daemon was reloaded and one epoch must come "
            "from one config and dataset; iterate the epoch again (it follows the new "
            "config) or pass on_reload='restart' to restart it by itself"
            % (endpoint, expected[:16], digest[:16], epoch, batch, yielded))


class KeyFileError(Error, ValueError):
    """A CURVE key file or key that cannot be used."""
