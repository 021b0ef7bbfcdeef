"""aug_repeats = K (timm RepeatAugSampler / DeiT RASampler) through the real
daemon: the epoch order stretched to [a]*K + [b]*K + ..., rank r taking
entries r, r+w, ... of it, only the first shard-size of them (the epoch
length per rank stays what it is without repeats), so each index appears K
times per epoch (the last one fewer when the cut falls inside its copies),
the copies on consecutive ranks, each copy with its own augmentation."""

from collections import Counter, defaultdict

import pytest

from helpers import Daemon

N = 48
PL = dict(size=32, batch_size=8, shuffle=True, flip=0.5)


@pytest.fixture(scope="module")
def daemons(tmp_path_factory, ds_square444):
    """The same pipeline names with and without repeats: the plain daemon's
    world-1 order is the epoch permutation the repeated one stretches."""
    ds = ds_square444.config()
    rep = {"k3": dict(PL, aug_repeats=3), "k5": dict(PL, aug_repeats=5, drop_last=False)}
    plain = {"k3": dict(PL), "k5": dict(PL, drop_last=False)}
    a = Daemon(tmp_path_factory.mktemp("rep"), ds, rep, name="rep").start()
    b = Daemon(tmp_path_factory.mktemp("plain"), ds, plain, name="plain").start()
    yield a, b
    a.stop()
    b.stop()


def epoch_meta(d, name, epoch, rank, world):
    with d.client(name, rank=rank, world=world) as c:
        nb = c.info()["batches_per_epoch"]
        return [m for k in range(nb) for m in c.batch(epoch, k).meta], nb


@pytest.mark.parametrize("name,K", [("k3", 3), ("k5", 5)])
@pytest.mark.parametrize("world", [1, 2, 4])
def test_repeats_follow_the_rasampler_order(daemons, name, K, world):
    rep, plain = daemons
    epoch = 1
    perm = [int(m["index"]) for m in epoch_meta(plain, name, epoch, 0, 1)[0]]
    assert sorted(perm) == list(range(N))
    shard = -(-N // world)  # drop_last false: ceil; N divisible by 1, 2, 4 anyway
    seen = Counter()
    ranks = defaultdict(set)
    crops = defaultdict(list)
    for r in range(world):
        meta, nb = epoch_meta(rep, name, epoch, r, world)
        _, nb_plain = epoch_meta(plain, name, epoch, r, world)
        assert nb == nb_plain, "the epoch length per rank is the one without repeats"
        assert len(meta) == shard
        for j, m in enumerate(meta):
            q = j * world + r
            assert int(m["index"]) == perm[(q % (N * K)) // K], (r, j)
            assert m["pad"] == (q >= N * K)
            seen[int(m["index"])] += 1
            ranks[int(m["index"])].add(r)
            crops[int(m["index"])].append(tuple(m["crop"]) + (int(m["flip"]),))
    # N positions of the stretched order: N // K indices K times, the cut one fewer
    full = [i for i, c in seen.items() if c == K]
    assert len(full) == N // K
    assert len(seen) == -(-N // K)
    assert all(c == K or c == N % K for c in seen.values()), seen
    # the copies go to different ranks as far as the world allows
    for i, rs in ranks.items():
        assert len(rs) == min(world, seen[i]), (i, rs)
    # each copy has its own augmentation (crop and flip)
    for i, cs in crops.items():
        if len(cs) > 1:
            assert len(set(cs)) > 1, (i, cs)


def test_repeated_epochs_differ_and_are_reproducible(daemons):
    rep, _ = daemons
    a, _ = epoch_meta(rep, "k3", 0, 0, 2)
    b, _ = epoch_meta(rep, "k3", 1, 0, 2)
    again, _ = epoch_meta(rep, "k3", 0, 0, 2)
    ia = [int(m["index"]) for m in a]
    assert ia != [int(m["index"]) for m in b], "a new permutation each epoch"
    assert [tuple(m["crop"]) for m in a] == [tuple(m["crop"]) for m in again]
