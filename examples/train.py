#!/usr/bin/python3
"""Train a small CNN on cutmixd batches: plain PyTorch, DDP-ready.

    # one process (CPU or one GPU)
    PYTHONPATH=client/python examples/train.py --endpoint tcp://127.0.0.1:5555 --epochs 5

    # several daemons, or every address of a DNS name (headless Service, Slurm)
    examples/train.py --endpoint tcp://cpu1:5555 --endpoint tcp://cpu2:5555
    examples/train.py --endpoint dns+tcp://cutmixd.default.svc:5555

    # DDP: one process per GPU (or per CPU rank with gloo), started by
    # torch.distributed.run / torchrun, Slurm's srun, or by hand with
    # RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set:
    torchrun --nproc_per_node 2 examples/train.py --endpoint ...

The daemon does the augmentation (crop, flip, Cutout, CutMix, MixUp) and
sends soft labels, so the loss is the soft-target cross entropy
-sum(y * log_softmax(logits)). Each DDP rank reads its own shard (rank and
world from torch.distributed); the epoch advances by itself on every pass
over the loader. ``--resume FILE`` saves/loads the model, optimizer and the
loader's state_dict (epoch and next batch) to continue exactly there.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client" / "python"))
import cutmixd.torch  # noqa: E402


def make_model(num_classes, channels=3):
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def soft_target_loss(logits, target):
    """Cross entropy against soft labels (CutMix/MixUp/label smoothing)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def to_input(images, device):
    """uint8 NHWC (or float NCHW) from the daemon -> float NCHW in [0, 1]."""
    x = images.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--endpoint", action="append", required=True,
                    help="daemon endpoint (repeat for several; tcp://, ipc:// or "
                         "dns+tcp://NAME:PORT)")
    ap.add_argument("--pipeline", default="train", help="the daemon's pipeline")
    ap.add_argument("--epochs", type=int, default=5, help="epochs to train")
    ap.add_argument("--steps", type=int, default=0, help="stop each epoch after this many "
                    "steps (0: the whole epoch)")
    ap.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="torch device (DDP on cuda: one GPU per LOCAL_RANK)")
    ap.add_argument("--seed", type=int, default=0, help="model initialisation seed")
    ap.add_argument("--timeout", type=float, default=60.0, help="client timeout (s)")
    ap.add_argument("--resume", help="checkpoint file: loaded if it exists, saved each epoch")
    ap.add_argument("--json", action="store_true", help="one JSON line per epoch on stdout")
    return ap.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if a.device.startswith("cuda") else "gloo")
        if a.device.startswith("cuda"):
            a.device = "cuda:%d" % int(os.environ.get("LOCAL_RANK", "0"))
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = torch.device(a.device)

    # After init_process_group: the loader reads this rank's shard.
    loader = cutmixd.torch.loader(a.endpoint, a.pipeline, num_workers=a.workers,
                                  timeout=a.timeout, rank=rank, world=world)
    ds = loader.dataset
    torch.manual_seed(a.seed)
    shape = ds.image_shape  # (H, W, C) for nhwc, (C, H, W) for nchw
    model = make_model(ds.num_classes, shape[-1] if ds.info["layout"] == "nhwc" else shape[0])
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)

    first_epoch = 0
    if a.resume and os.path.exists(a.resume):
        ck = torch.load(a.resume, map_location=device)
        (model.module if distributed else model).load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        loader.load_state_dict(ck["loader"])
        first_epoch = ck["loader"]["epoch"]

    for epoch in range(first_epoch, a.epochs):
        model.train()
        t0, seen, total, steps = time.monotonic(), 0, 0.0, 0
        indices = []  # dataset indices of this rank's samples (--json)
        for images, labels, meta in loader:
            x = to_input(images, device)
            y = labels.to(device, non_blocking=True)
            loss = soft_target_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            seen += x.shape[0]
            steps += 1
            if a.json:
                indices += meta["index"][meta["pad"] == 0].tolist()  # not wrap-around pads
            if a.steps and steps >= a.steps:
                break
        dt = time.monotonic() - t0
        if a.resume and rank == 0:
            torch.save({"model": (model.module if distributed else model).state_dict(),
                        "opt": opt.state_dict(), "loader": loader.state_dict()}, a.resume)
        params = torch.cat([p.detach().flatten().cpu() for p in model.parameters()])
        rec = {"rank": rank, "world": world, "epoch": epoch, "steps": steps,
               "images": seen, "loss": total / max(steps, 1), "img_per_s": seen / max(dt, 1e-9),
               "param_sum": float(params.double().sum())}
        if a.json:
            rec["indices"] = indices
        if a.json:
            print(json.dumps(rec), flush=True)
        elif rank == 0:
            print("epoch %d: %d steps, loss %.4f, %.0f img/s" % (
                epoch, steps, rec["loss"], rec["img_per_s"]), flush=True)
    ds.close()
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
