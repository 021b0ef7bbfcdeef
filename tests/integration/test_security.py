"""[security]: CURVE encryption and client authentication against the real
daemon. `cutmixd keygen` writes the key files with the right modes and never
overwrites; an authorized CURVE client is served (raw pyzmq, the Python
client when it speaks CURVE, `cutmixd stats --key`); an unauthorized key
and a plain client get zero bytes while an authorized client on the same
daemon is served; authorized_keys as a folder of *.pub files; SIGHUP
re-reads the keys (a bad file keeps the old set); a bad key file stops the
start with status 78 and names the file and line.

Key files are parsed here with a regex of their documented format, not
with the daemon's reader, so the two are checked against each other.
"""

import inspect
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import zmq

import cutmixd
from cutmixd import _wire
import helpers
from helpers import BIN, EX_CONFIG, Daemon, require_binary

PIPELINES = {"train": dict(batch_size=4, size=32, crop="center", resize=32, shuffle=False)}
SERVER = {"workers": 1}
SILENCE_S = 1.5  # how long a refused client is watched for any byte

KEY_RE = re.compile(r"\A# cutmixd CURVE key pair: keep this file secret\n"
                    r"public-key = (?P<pub>\S{40})\nsecret-key = (?P<sec>\S{40})\n\Z")
PUB_RE = re.compile(r"\A# cutmixd CURVE public key\npublic-key = (?P<pub>\S{40})\n\Z")


# -- helpers -------------------------------------------------------------------------

def keygen(folder, name, umask=None):
    require_binary(BIN)
    return subprocess.run([str(BIN), "keygen", name], cwd=str(folder), capture_output=True,
                          text=True, timeout=10,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


class Keys:
    """A key pair written by `cutmixd keygen`, read back with the regexes."""

    def __init__(self, folder, name):
        p = keygen(folder, name)
        assert p.returncode == 0, p.stderr
        self.name = name
        self.key_path = folder / (name + ".key")
        self.pub_path = folder / (name + ".pub")
        m = KEY_RE.match(self.key_path.read_text())
        assert m, self.key_path.read_text()
        self.public, self.secret = m.group("pub"), m.group("sec")
        assert PUB_RE.match(self.pub_path.read_text()).group("pub") == self.public


class SecureDaemon(Daemon):
    """helpers.Daemon whose config ends with a [security] section."""

    def __init__(self, workdir, dataset, security, server=None, **kw):
        srv = dict(SERVER)
        srv.update(server or {})
        super().__init__(workdir, dataset, PIPELINES, server=srv, security=security, **kw)


free_tcp_port = helpers.free_port


def dealer(endpoint, server=None, client=None):
    """A DEALER; CURVE when server (Keys) and client (Keys) are given."""
    curve = None if server is None else (server.public, client.public, client.secret)
    return helpers.dealer(endpoint, curve=curve)


def request(type, rid, **kw):
    return _wire.encode_request(type, rid, "train", **kw)


def ask_info_and_batch(sock, timeout=10.0):
    """INFO and BATCH 0 of epoch 0: both answered, well formed."""
    sock.send(request(_wire.INFO, 1))
    sock.send(request(_wire.BATCH, 2))
    got = {}
    deadline = time.monotonic() + timeout
    while len(got) < 2:
        left = deadline - time.monotonic()
        assert left > 0 and sock.poll(int(left * 1000)), "no reply within %gs: %s" % (
            timeout, sorted(got))
        frames = sock.recv_multipart()
        hdr = _wire.decode_reply(frames[0])
        got[hdr.request_id] = (hdr, frames)
    info, frames = got[1]
    assert info.type == _wire.INFO and len(frames) == 2
    assert b"train" in frames[1]
    batch, frames = got[2]
    assert batch.type == _wire.BATCH, frames[1:2]
    assert (batch.batch_size, batch.height, batch.width) == (4, 32, 32)
    assert tuple(len(f) for f in frames[1:]) == tuple(batch.body_bytes)
    assert len(frames[1]) == 4 * 32 * 32 * 3
    return batch


def frames_within(socks, seconds):
    """Frames that arrive on any of socks within `seconds`."""
    count = 0
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return count
        for s, _ in poller.poll(int(left * 1000) + 1):
            count += len(s.recv_multipart())


def wait_log(d, text, after=0, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = d.log()[after:]
        if text in log:
            return log
        if not d.alive():
            break
        time.sleep(0.02)
    pytest.fail("%r not in the daemon's log within %gs" % (text, timeout), pytrace=False)


def client_speaks_curve():
    try:
        params = inspect.signature(cutmixd.Client).parameters
    except (TypeError, ValueError):
        return False
    return all(k in params for k in ("server_key", "public_key", "secret_key"))


# -- keygen ----------------------------------------------------------------------------

def test_keygen_writes_both_files_and_never_overwrites(tmp_path):
    # umask 077 would make a plain open(0644) 0600: the .pub must be 0644
    p = keygen(tmp_path, "alice", umask=0o077)
    assert p.returncode == 0, p.stderr
    key, pub = tmp_path / "alice.key", tmp_path / "alice.pub"
    assert oct(key.stat().st_mode & 0o7777) == "0o600"
    assert oct(pub.stat().st_mode & 0o7777) == "0o644"
    m = KEY_RE.match(key.read_text())
    assert m, key.read_text()
    assert PUB_RE.match(pub.read_text()).group("pub") == m.group("pub")
    # a real pair: the secret key yields the public key
    assert zmq.curve_public(m.group("sec").encode()).decode() == m.group("pub")
    assert m.group("pub") in p.stdout and m.group("sec") not in p.stdout

    before = (key.read_bytes(), pub.read_bytes())
    p = keygen(tmp_path, "alice")
    assert p.returncode != 0
    assert "alice.key: not overwriting an existing file" in p.stderr, p.stderr
    assert (key.read_bytes(), pub.read_bytes()) == before
    # either file existing is enough; nothing is left behind
    key.unlink()
    p = keygen(tmp_path, "alice")
    assert p.returncode != 0 and "alice.pub: not overwriting" in p.stderr, p.stderr
    assert not key.exists()
    # two pairs differ; NAME may have a folder
    (tmp_path / "sub").mkdir()
    assert keygen(tmp_path, "sub/bob").returncode == 0
    assert KEY_RE.match((tmp_path / "sub/bob.key").read_text()).group("sec") != m.group("sec")
    p = keygen(tmp_path, "")
    assert p.returncode != 0


# -- one daemon with a file of authorized keys -------------------------------------------

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return {n: Keys(folder, n) for n in ("server", "alice", "carol", "mallory")}


@pytest.fixture(scope="module")
def secure(tmp_path_factory, keys, ds_square444):
    work = tmp_path_factory.mktemp("secure")
    auth = work / "authorized_keys"
    auth.write_text("# the clients let in\n%s\n\n%s" % (
        keys["alice"].pub_path.read_text(), keys["carol"].public + "\n"))
    port = free_tcp_port()
    d = SecureDaemon(work, ds_square444.config(), {
        "curve_secret_key_file": keys["server"].key_path,
        "authorized_keys": "authorized_keys",  # relative to the config's folder
    }, server={}, name="secure")
    d.server["endpoint"] = "%s, tcp://0.0.0.0:%d" % (d.endpoint, port)
    d.tcp = "tcp://127.0.0.1:%d" % port
    d.start()
    yield d
    d.stop()


def test_authorized_curve_client_is_served(secure, keys):
    log = secure.log()
    assert "security: CURVE on, server public key %s, 2 authorized client keys" % (
        keys["server"].public) in log
    # CURVE on: a wildcard tcp endpoint is not "unauthenticated"
    assert "not authenticated" not in log
    for who, endpoint in (("alice", secure.endpoint), ("carol", secure.tcp)):
        s = dealer(endpoint, keys["server"], keys[who])
        try:
            ask_info_and_batch(s)
        finally:
            s.close()


@pytest.mark.skipif(not client_speaks_curve(),
                    reason="cutmixd.Client has no server_key/public_key/secret_key yet")
def test_python_client_with_keys(secure, keys):
    kw = dict(server_key=keys["server"].public, public_key=keys["alice"].public,
              secret_key=keys["alice"].secret)
    if hasattr(cutmixd, "load_keypair") and hasattr(cutmixd, "load_public_key"):
        pub, sec = cutmixd.load_keypair(keys["alice"].key_path)
        kw = dict(server_key=cutmixd.load_public_key(keys["server"].pub_path),
                  public_key=pub, secret_key=sec)
        assert (pub, sec) == (keys["alice"].public, keys["alice"].secret)
    with cutmixd.Client(secure.endpoint, pipeline="train", timeout=10, **kw) as c:
        assert c.info()["batches_per_epoch"] == 12
        b = c.batch(0, 3)
        assert len(b) == 4


def test_unauthorized_and_plain_clients_get_nothing(secure, keys):
    mark = len(secure.log())
    mallory = dealer(secure.tcp, keys["server"], keys["mallory"])
    plain = dealer(secure.endpoint)
    # wrong server key: the handshake cannot even be decrypted
    forged = dealer(secure.endpoint, keys["alice"], keys["alice"])
    alice = dealer(secure.endpoint, keys["server"], keys["alice"])
    intruders = [mallory, plain, forged]
    try:
        for s in intruders:
            for rid, t in enumerate((_wire.INFO, _wire.BATCH, _wire.STATS)):
                s.send(request(t, rid), zmq.NOBLOCK)
            s.send(b"garbage", zmq.NOBLOCK)  # not even an ERROR comes back
        t0 = time.monotonic()
        # on the same daemon, at the same time, alice is served
        ask_info_and_batch(alice)
        n = frames_within(intruders, max(0.0, SILENCE_S - (time.monotonic() - t0)))
        assert n == 0, "a client without an authorized key received %d frames" % n
    finally:
        for s in intruders + [alice]:
            s.close()
    # the refused key is logged once (the client retried), with its address
    log = secure.log()[mark:]
    lines = [ln for ln in log.splitlines() if keys["mallory"].public in ln]
    assert len(lines) == 1, log
    assert lines[0].startswith("<4>security: refused client key %s from '127.0.0.1'"
                               % keys["mallory"].public), lines[0]
    assert keys["alice"].public not in log
    assert secure.alive()


def test_stats_command_with_client_keys(secure, keys):
    p = subprocess.run([str(BIN), "stats", "--key", str(keys["alice"].key_path),
                        "--server-key", str(keys["server"].pub_path), secure.endpoint],
                       capture_output=True, text=True, timeout=15)
    assert p.returncode == 0, p.stderr
    assert '"batches"' in p.stdout
    # the server key may also be given as the key itself
    p = subprocess.run([str(BIN), "stats", "--key", str(keys["carol"].key_path),
                        "--server-key", keys["server"].public, secure.tcp],
                       capture_output=True, text=True, timeout=15)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(BIN), "stats", "--key", str(keys["alice"].key_path),
                        secure.endpoint], capture_output=True, text=True, timeout=15)
    assert p.returncode == 64, p.stderr


# -- a folder of *.pub files, SIGHUP -----------------------------------------------------

def test_folder_of_pub_files_and_sighup(tmp_path, keys, ds_square444):
    clients = tmp_path / "clients"
    clients.mkdir()
    shutil.copy(keys["alice"].pub_path, clients / "alice.pub")
    shutil.copy(keys["mallory"].key_path, clients / "mallory.key")  # not *.pub: ignored
    (clients / "README").write_text("public keys of the trainers, one NAME.pub each\n")
    d = SecureDaemon(tmp_path / "d", ds_square444.config(), {
        "curve_secret_key_file": keys["server"].key_path,
        "authorized_keys": clients,
    }, name="folder")
    with d:
        assert "1 authorized client keys" in d.log()
        s = dealer(d.endpoint, keys["server"], keys["alice"])
        ask_info_and_batch(s)
        s.close()
        for who in ("carol", "mallory"):
            s = dealer(d.endpoint, keys["server"], keys[who])
            s.send(request(_wire.INFO, 1))
            assert frames_within([s], 0.5) == 0, who
            s.close()

        # carol's key arrives: SIGHUP lets her in
        shutil.copy(keys["carol"].pub_path, clients / "carol.pub")
        mark = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "reload: config digest", after=mark)
        assert "reload: 2 authorized client keys" in d.log()[mark:]
        s = dealer(d.endpoint, keys["server"], keys["carol"])
        ask_info_and_batch(s)
        s.close()

        # a bad .pub: the reload fails, naming file and line; the set stays
        (clients / "zz.pub").write_text("# truncated copy\npublic-key = %s\n"
                                        % keys["mallory"].public[:30])
        mark = len(d.log())
        d.proc.send_signal(signal.SIGHUP)
        log = wait_log(d, "reload: keeping the running config:", after=mark)
        assert "%s:2: public-key: must be 40 Z85 characters" % (clients / "zz.pub") in log, log
        for who in ("alice", "carol"):
            s = dealer(d.endpoint, keys["server"], keys[who])
            ask_info_and_batch(s)
            s.close()
        s = dealer(d.endpoint, keys["server"], keys["mallory"])
        s.send(request(_wire.INFO, 1))
        assert frames_within([s], 0.3) == 0
        s.close()


# -- bad key files at start -------------------------------------------------------------

def run_daemon(d, *args, timeout=30):
    """Start d's command to completion (it must fail); (status, stderr)."""
    require_binary(BIN)
    d.write_config()
    p = subprocess.run(d.command() + list(args), capture_output=True, text=True,
                       timeout=timeout, cwd=str(d.dir))
    return p.returncode, p.stderr


def config_line(stderr):
    lines = [ln for ln in stderr.splitlines() if "config:" in ln]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("<3>config: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("case", ["bad_line", "pub_as_secret", "no_folder", "empty_folder",
                                  "half_section"])
def test_bad_key_file_exits_78_naming_file_and_line(tmp_path, keys, ds_square444, case):
    auth = tmp_path / "authorized_keys"
    auth.write_text("# ok\n%s\nnot a key at all\n" % keys["alice"].public)
    sec = {"curve_secret_key_file": keys["server"].key_path, "authorized_keys": auth}
    want = "%s:3: expected 'public-key = KEY'" % auth
    if case == "pub_as_secret":
        sec["curve_secret_key_file"] = keys["server"].pub_path
        want = "%s: no 'secret-key = KEY' line" % keys["server"].pub_path
    elif case == "no_folder":
        sec["authorized_keys"] = tmp_path / "nope"
        want = "%s: cannot open: No such file or directory" % (tmp_path / "nope")
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        sec["authorized_keys"] = tmp_path / "empty"
        want = "%s: no *.pub files in this folder" % (tmp_path / "empty")
    elif case == "half_section":
        del sec["authorized_keys"]
    d = SecureDaemon(tmp_path / "d", ds_square444.config(), sec, name="bad")
    for args in ((), ("--check",)):
        rc, err = run_daemon(d, *args)
        assert rc == EX_CONFIG, "status %d, expected %d\n%s" % (rc, EX_CONFIG, err)
        line = config_line(err)
        if case == "half_section":  # the line of the key in the config
            text = d.config_path.read_text().splitlines()
            n = text.index("curve_secret_key_file = %s" % keys["server"].key_path) + 1
            want = "%s:%d: [security] curve_secret_key_file: needs authorized_keys too" % (
                d.config_path, n)
        assert want in line, line
        assert "ready:" not in err
        assert not d.socket_path.exists(), "bound although a key file is bad"


def test_check_reports_security(tmp_path, keys, ds_square444):
    d = SecureDaemon(tmp_path / "d", ds_square444.config(), {
        "curve_secret_key_file": keys["server"].key_path,
        "authorized_keys": keys["alice"].pub_path,
    }, name="check")
    require_binary(BIN)
    d.write_config()
    p = subprocess.run(d.command() + ["--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "security CURVE, server public key %s, 1 authorized client keys" % (
        keys["server"].public) in p.stdout
    # a secret key others can read: a warning, not an error
    loose = tmp_path / "loose.key"
    shutil.copy(keys["server"].key_path, loose)
    loose.chmod(0o644)
    d.security["curve_secret_key_file"] = loose
    d.write_config()
    p = subprocess.run(d.command() + ["--check"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "<4>keys: '%s' holds a secret key and is accessible to group or others (mode 644)" % (
        loose) in p.stderr
    assert keys["server"].secret not in p.stderr + p.stdout
