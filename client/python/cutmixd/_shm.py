"""Shared-memory sessions with a local daemon (proto/PROTOCOL.md, "Shared
memory"): the daemon writes a batch into a slot of a memfd this process
maps read-only, and the reply carries only where it is.

A Batch's arrays are numpy views on one slot. The slot goes back to the
daemon (SHM_RELEASE) once nothing references that memory any more: a
``weakref.finalize`` on the slot's base array (which every view, and every
``torch.from_numpy`` tensor of a view, keeps alive) queues the release on a
thread-safe deque, and the client sends what is queued at its next request,
poll or close. So a batch kept by user code is never overwritten: the
daemon only writes released slots and copies when none is free."""

import collections
import ipaddress
import mmap
import os
import socket
import threading
import time
import weakref
from urllib.parse import urlsplit

import numpy as np
import zmq

from . import _wire
from ._errors import ProtocolError

HANDSHAKE_TIMEOUT = 2.0  # seconds for the side-socket exchange
SLOT_CLOSE = 0xFFFFFFFF  # SHM_RELEASE of this slot ends the session


def eligible(endpoint, mode):
    """Whether a session is worth asking for on `endpoint` under
    Client(shm=mode): "auto" = ipc:// and tcp:// to a loopback address,
    True = any endpoint (the side socket connect fails off-host), False =
    never."""
    if mode is False:
        return False
    if mode is True:
        return True
    if endpoint.startswith("ipc://"):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_mode(mode):
    if mode not in ("auto", True, False):
        raise ValueError("cutmixd.Client: shm must be 'auto', True or False, got %r" % (mode,))
    return mode


def connect(s, addr, deadline):
    """connect() to an abstract socket whose backlog may be full for a
    moment (AF_UNIX then fails with EAGAIN instead of waiting)."""
    while True:
        try:
            return s.connect(addr)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class SlotRef:
    """One received slot: its base array (whose finalizer releases it) and
    the descriptor's parts."""

    __slots__ = ("session", "base", "offs", "lens")

    def __init__(self, session, base, offs, lens):
        self.session, self.base, self.offs, self.lens = session, base, offs, lens

    def views(self, want):
        """(images, labels, meta) uint8 arrays, checked against the slot and
        the sizes `want`; each keeps the base array alive."""
        size = self.session.slot_size
        for off, n, w in zip(self.offs, self.lens, want):
            if n != w or off > size or n > size - off:
                raise ProtocolError("cutmixd %s: shm descriptor part %d+%d outside the slot "
                                    "of %d bytes (or not the %d expected)"
                                    % (self.session.endpoint, off, n, size, w))
        return [self.base[off:off + n] for off, n in zip(self.offs, self.lens)]


class Session:
    """One session: the read-only mapping and the releases to send."""

    def __init__(self, body, endpoint):
        if len(body) != _wire.SHM_OPEN_BODY.size:
            raise ProtocolError("cutmixd %s: shm open reply of %d bytes" % (endpoint, len(body)))
        sid, slots, slot_size, token, name = _wire.SHM_OPEN_BODY.unpack(bytes(body))
        name = name.split(b"\0", 1)[0]
        if not name.startswith(b"@") or len(name) < 2 or not 1 <= slots <= 64 \
                or not 0 < slot_size < 1 << 40:
            raise ProtocolError("cutmixd %s: bad shm open reply" % endpoint)
        self.id, self.slots, self.slot_size = sid, slots, slot_size
        self.endpoint = endpoint
        fd = self._handshake(b"\0" + name[1:], token)
        try:
            size = os.fstat(fd).st_size
            if size != slots * slot_size:
                raise ProtocolError("cutmixd %s: shm file of %d bytes, expected %d"
                                    % (endpoint, size, slots * slot_size))
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        self.releases = collections.deque()  # (slot, generation), any thread appends
        # re-entrant: a finalizer may run in a garbage collection that
        # starts while this thread holds it
        self._lock = threading.RLock()
        self.live = 0       # slots with views alive
        self.batches = 0    # batches received through this session

    def _handshake(self, addr, token):
        """Connect to the daemon's side socket, prove the token; the memfd."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(HANDSHAKE_TIMEOUT)
            connect(s, addr, time.monotonic() + HANDSHAKE_TIMEOUT)
            s.sendall(token)
            msg, anc, _, _ = s.recvmsg(8, socket.CMSG_SPACE(4))
            fds = []
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds += list(np.frombuffer(data[:len(data) - len(data) % 4], dtype="<i4"))
            fds = [int(f) for f in fds]
            if len(msg) != 8 or int.from_bytes(msg, "little") != self.id or len(fds) != 1:
                for f in fds:
                    os.close(f)
                raise ProtocolError("cutmixd %s: shm handshake refused" % self.endpoint)
            return fds[0]

    def take(self, desc):
        """The slot a BATCH reply's descriptor names, as a SlotRef, taken
        when the reply arrives: whatever becomes of the reply (a Batch, or
        dropped as late or duplicate), the slot is released once the last
        reference to its memory is gone."""
        d = bytes(desc)
        if len(d) != _wire.SHM_DESC.size:
            raise ProtocolError("cutmixd %s: shm descriptor of %d bytes" % (self.endpoint, len(d)))
        sid, slot, gen, *parts = _wire.SHM_DESC.unpack(d)
        if sid != self.id or slot >= self.slots:
            raise ProtocolError("cutmixd %s: shm descriptor names session %x slot %d"
                                % (self.endpoint, sid, slot))
        base = np.frombuffer(self._map, dtype=np.uint8, count=self.slot_size,
                             offset=slot * self.slot_size)
        with self._lock:
            self.live += 1
            self.batches += 1
        weakref.finalize(base, self._release, slot, gen)
        return SlotRef(self, base, parts[0::2], parts[1::2])

    def _release(self, slot, gen):
        with self._lock:
            self.live -= 1
        self.releases.append((slot, gen))

    def close(self, sock):
        """Tell the daemon the session is over (slot 0xffffffff): it unmaps
        its side now; the views still held keep this process's mapping."""
        self.releases.append((SLOT_CLOSE, 0))
        self.flush(sock, 0)

    def flush(self, sock, rid):
        """Send the queued releases on sock (no reply); the ones the socket
        will not take now stay queued."""
        while self.releases:
            slot, gen = self.releases.popleft()
            frame = _wire.encode_request(_wire.SHM_RELEASE, rid, "", epoch=gen, batch=slot,
                                         session=self.id)
            try:
                sock.send(frame, zmq.NOBLOCK)
            except zmq.ZMQError:
                self.releases.appendleft((slot, gen))
                return
