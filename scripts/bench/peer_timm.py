"""The peer side of `peers.py`: timm's data pipeline (`timm.data.create_loader`, its prefetcher) and a plain
training step, on the same model, data and recipe as the convnetlab run it is compared with.

Run by peers.py: python scripts/bench/peer_timm.py OUT.json DATA_ROOT --epochs 3 [--channels-last]

Training images/s are timed as convnetlab's TrainThroughput times them: data loading between batches
included, the first WARMUP batches of every epoch left out, no validation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from timm.data import ImageDataset, create_loader
from timm.optim import create_optimizer_v2

WARMUP = 5  # batches per epoch left out of the timing (TrainThroughput's default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("root", type=Path, help="class-folder dataset (its train/ split is used)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(42)
    dataset = ImageDataset(str(args.root / "train"))
    num_classes = len({label for _, label in dataset.reader.samples})
    # The recipe convnetlab's default preset trains with: random-resized crops (8-100%) + flips, no colour
    # jitter (timm's default 0.4 would add work convnetlab does not do).
    loader = create_loader(dataset, input_size=(3, args.image_size, args.image_size), batch_size=args.batch_size,
                           is_training=True, scale=(0.08, 1.0), color_jitter=0.0, num_workers=args.workers,
                           device=torch.device("cpu"), use_prefetcher=True, persistent_workers=True)
    model = torchvision.models.resnet18(num_classes=num_classes)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    # "momentum" is timm's plain momentum SGD (its "sgd" is Nesterov); norms and biases get no weight decay.
    optimizer = create_optimizer_v2(model, opt="momentum", lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader))

    images, seconds = 0, 0.0
    for _ in range(args.epochs):
        start, counted = None, 0
        for step, (x, y) in enumerate(loader):
            if step == WARMUP:
                start = time.perf_counter()
            x = x.contiguous(memory_format=memory_format)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if start is not None:
                counted += len(x)
        if start is not None:
            images, seconds = images + counted, seconds + time.perf_counter() - start
    args.out.write_text(json.dumps({"train_images_per_s": images / seconds, "images": images, "seconds": seconds,
                                    "final_loss": float(loss.detach())}))


if __name__ == "__main__":
    main()
