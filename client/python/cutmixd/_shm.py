"""Shared-memory sessions with a local daemon (proto/PROTOCOL.md, "Shared
memory"): the daemon writes a batch into a slot of a memfd this process
maps, and the reply carries only where it is.

A Batch's arrays are numpy views on one slot. The slot goes back to the
daemon (SHM_RELEASE) once nothing references that memory any more: a
``weakref.finalize`` on the slot's base array (which every view, and every
``torch.from_numpy`` tensor of a view, keeps alive) queues the release on a
thread-safe deque, and the client sends what is queued at its next request,
poll or close. So a batch kept by user code is never overwritten: the
daemon only writes released slots and copies when none is free.

The arrays are writable, as on the copy path (torch.from_numpy tensors get
modified in place by trainers). The memfd is sealed against shared writable
maps (F_SEAL_FUTURE_WRITE), so it is mapped MAP_PRIVATE read-write: a page
nobody wrote maps the daemon's page (its next batch in that slot shows
through), a page the user writes becomes a private copy, which would hide
the daemon's next batch in that slot. So when a slot is released, its
private copies are dropped first (MADV_DONTNEED): the pages
/proc/self/pagemap shows as anonymous, or the whole slot where pagemap
cannot be trusted. The user's writes stay in this process and go when the
batch does; the daemon never sees them."""

import collections
import fcntl
import ipaddress
import mmap
import os
import socket
import struct
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
PAGE = mmap.PAGESIZE
# /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst);
# the flags are readable unprivileged (only the PFNs read as 0)
PM_PRESENT, PM_SWAPPED, PM_FILE = (np.uint64(1 << b) for b in (63, 62, 61))
# its PAGEMAP_SCAN ioctl (Linux 6.7): _IOWR('f', 16, struct pm_scan_arg of
# 12 u64), and the page categories it filters on
PAGEMAP_SCAN = (3 << 30) | (96 << 16) | (ord("f") << 8) | 16
PAGE_IS_FILE, PAGE_IS_PRESENT, PAGE_IS_SWAPPED = 1 << 2, 1 << 3, 1 << 4
MAX_RUNS = 64  # more private runs than this: one madvise over their span
# PAGEMAP_SCAN finds the runs in the kernel, about a third cheaper than
# reading the entries; False once it failed (older kernels) or its answer
# failed the self-test; tests set it to exercise the entries' path.
USE_SCAN = True
# Test hook: True makes every release drop the whole slot, as where
# /proc/self/pagemap cannot be read (tests/integration/test_shm.py).
FORCE_WHOLE_SLOT = False


def private_runs(addr, npages):
    """[(first page, count)] of the pages at addr holding private copies
    (copied on write, present or swapped out: anonymous, not the file's
    page cache page), from /proc/self/pagemap (opened per call: after a
    fork, "self" is the child). OSError where it cannot be read."""
    if FORCE_WHOLE_SLOT:
        raise OSError("cutmixd._shm.FORCE_WHOLE_SLOT is set")
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if USE_SCAN:
            try:
                return scan_runs(fd, addr, npages)
            except OSError:
                disable_scan()
        raw = os.pread(fd, 8 * npages, addr // PAGE * 8)
    finally:
        os.close(fd)
    if len(raw) != 8 * npages:
        raise OSError("short read of /proc/self/pagemap")
    e = np.frombuffer(raw, dtype="<u8")
    idx = np.flatnonzero(((e & (PM_PRESENT | PM_SWAPPED)) != 0) & ((e & PM_FILE) == 0))
    if not len(idx):
        return []
    cut = np.flatnonzero(np.diff(idx) != 1)
    starts = idx[np.concatenate(([0], cut + 1))]
    ends = idx[np.concatenate((cut, [len(idx) - 1]))] + 1
    return [(int(a), int(b - a)) for a, b in zip(starts, ends)]


def disable_scan():
    global USE_SCAN
    USE_SCAN = False


def scan_runs(fd, addr, npages):
    """private_runs through PAGEMAP_SCAN: the regions present or swapped
    and not file pages. Should the vector fill up, the rest of the range
    after where the walk stopped counts as one run."""
    end = addr + npages * PAGE
    vec = np.zeros(3 * (MAX_RUNS + 1), dtype=np.uint64)  # page_region: start, end, categories
    arg = bytearray(struct.pack("<12Q", 96, 0, addr, end, 0, vec.ctypes.data, MAX_RUNS + 1, 0,
                                PAGE_IS_FILE, PAGE_IS_FILE, PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                                PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE))
    n = fcntl.ioctl(fd, PAGEMAP_SCAN, arg)
    r = vec[:3 * n].reshape(n, 3)
    runs = [(int(a - addr) // PAGE, int(b - a) // PAGE) for a, b in zip(r[:, 0], r[:, 1])]
    walk_end = struct.unpack_from("<Q", arg, 32)[0]
    if walk_end < end:
        runs.append(((walk_end - addr) // PAGE, (end - walk_end) // PAGE))
    return runs


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
    """One session: the private mapping and the releases to send."""

    def __init__(self, body, endpoint):
        if len(body) != _wire.SHM_OPEN_BODY.size:
            raise ProtocolError("cutmixd %s: shm open reply of %d bytes" % (endpoint, len(body)))
        sid, slots, slot_size, token, name = _wire.SHM_OPEN_BODY.unpack(bytes(body))
        name = name.split(b"\0", 1)[0]
        if not name.startswith(b"@") or len(name) < 2 or not 1 <= slots <= 64 \
                or not 0 < slot_size < 1 << 40:
            raise ProtocolError("cutmixd %s: bad shm open reply" % endpoint)
        if slot_size % PAGE:  # a page shared by two slots could not be dropped
            raise ProtocolError("cutmixd %s: shm slots of %d bytes are not whole %d-byte "
                                "pages here" % (endpoint, slot_size, PAGE))
        self.id, self.slots, self.slot_size = sid, slots, slot_size
        self.endpoint = endpoint
        fd = self._handshake(b"\0" + name[1:], token)
        try:
            size = os.fstat(fd).st_size
            if size != slots * slot_size:
                raise ProtocolError("cutmixd %s: shm file of %d bytes, expected %d"
                                    % (endpoint, size, slots * slot_size))
            self._map = mmap.mmap(fd, size, mmap.MAP_PRIVATE,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        probe = np.frombuffer(self._map, dtype=np.uint8, count=1)
        self._addr = probe.ctypes.data
        del probe
        self.exact = self._pagemap_works()
        if not self.exact and USE_SCAN and not FORCE_WHOLE_SLOT:  # the ioctl wrong?
            disable_scan()
            self.exact = self._pagemap_works()
        self.releases = collections.deque()  # (slot, generation), any thread appends
        # re-entrant: a finalizer may run in a garbage collection that
        # starts while this thread holds it
        self._lock = threading.RLock()
        self.live = 0       # slots with views alive
        self.batches = 0    # batches received through this session

    def _pagemap_works(self):
        """Whether pagemap tells this mapping's private copies apart here
        (a kernel or sandbox could answer zeros): page 0 read, then
        written, must read back as the file's page, then as a private
        one. No view exists yet; the copy is dropped again."""
        a = np.frombuffer(self._map, dtype=np.uint8, count=1)
        try:
            v = int(a[0])
            seen = private_runs(self._addr, 1)
            a[0] = v
            seen = (seen, private_runs(self._addr, 1))
            self._map.madvise(mmap.MADV_DONTNEED, 0, PAGE)
            return seen == ([], [(0, 1)]) and private_runs(self._addr, 1) == []
        except OSError:
            return False
        finally:
            del a

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
        """The finalizer of a slot's base array: no view of it is left.
        Its private copies are dropped BEFORE the release is queued (so
        before the daemon can hear of it and write its next batch there):
        the next batch's views then read the daemon's pages, and no
        stale private page can hide them, whichever thread takes it."""
        dropped = self._drop_private(slot)
        with self._lock:
            self.live -= 1
        if dropped:
            self.releases.append((slot, gen))

    def _drop_private(self, slot):
        """MADV_DONTNEED the slot's pages the user wrote (the whole slot
        where pagemap cannot tell). False when madvise fails (e.g. mlocked
        pages): the slot is then never released, and the daemon copies
        rather than write a batch this process could not see."""
        start, n = slot * self.slot_size, self.slot_size // PAGE
        try:
            runs = private_runs(self._addr + start, n) if self.exact else None
        except OSError:
            runs = None
        if runs is None:
            runs = [(0, n)]
        elif len(runs) > MAX_RUNS:
            runs = [(runs[0][0], runs[-1][0] + runs[-1][1] - runs[0][0])]
        try:
            for first, count in runs:
                self._map.madvise(mmap.MADV_DONTNEED, start + first * PAGE, count * PAGE)
        except (OSError, ValueError):
            return False
        return True

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
