"""The main job: the seed article's SimpleCNN on handwritten digits.

Conv2d(1, 32, 3, 1) -> ReLU -> MaxPool2d(2) -> flatten -> Linear(32*13*13, 128) -> ReLU ->
Linear(128, 10), Adam(lr=1e-3), CrossEntropyLoss. Prints the training loss and validation accuracy
of every epoch, one line each (rank 0 also draws a progress bar when stdout is a terminal). With
no arguments it trains on the embedded digits (scikit-learn's 1,797 8x8 images, upscaled and
padded to 28x28; no download); `--data-dir` points it at real MNIST IDX files.

The same script runs in one process or under mpirun: with more than one rank it wraps the model
in DataParallel and shards the data with DistributedSampler. --batch-size is the global batch
(each rank takes batch_size / ranks), so the optimisation is the same at any rank count.

    python examples/mnist_cnn.py                      # embedded digits, 10 epochs
    python examples/mnist_cnn.py --data-dir ~/mnist   # train-images-idx3-ubyte[.gz] etc.
    launch/local.sh 2 examples/mnist_cnn.py           # 2 ranks (mpirun -n 2 ...)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tqdm import tqdm

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.data import DataLoader, DistributedSampler, datasets


class SimpleCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 32, 3, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 13 * 13, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(self.conv(x).relu())
        x = x.flatten(1)
        return self.fc2(self.fc1(x).relu())


def load_data(args):
    if args.data_dir:
        return (datasets.MNIST(args.data_dir, train=True),
                datasets.MNIST(args.data_dir, train=False), "MNIST")
    return (datasets.Digits("train", val_fraction=args.val_fraction, seed=args.seed),
            datasets.Digits("val", val_fraction=args.val_fraction, seed=args.seed),
            "embedded digits")


def evaluate(model, loader, comm=None) -> float:
    """Accuracy over `loader` (over every rank's shard when comm is given)."""
    model.eval()
    correct = total = 0
    with dt.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum().item())
            total += len(y)
    model.train()
    if comm is not None:
        correct, total = comm.allreduce_obj(correct), comm.allreduce_obj(total)
    return correct / max(total, 1)


def shows_progress_bar(rank: int, stream=None, disabled: bool = False) -> bool:
    """Whether to draw the tqdm bar: on rank 0 only, and only when `stream` (default: stdout,
    where the bar is drawn) is a terminal.

    NOTE: under disttrain-launch or a pipe every tqdm refresh becomes a line of its own (~30 an
    epoch in the launcher's console and the rank logs); there the epoch summary is the progress.

    Example:
        >>> import io
        >>> shows_progress_bar(0, io.StringIO())
        False
    """
    stream = sys.stdout if stream is None else stream
    return rank == 0 and not disabled and stream.isatty()


def train_epoch(model, loader, optimizer, loss_fn, epoch, show_progress) -> float:
    batches = loader
    if show_progress:
        batches = tqdm(loader, desc=f"epoch {epoch}", leave=False, file=sys.stdout)
    total, count = 0.0, 0
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        total, count = total + loss.item() * len(y), count + len(y)
        if show_progress:
            batches.set_postfix(loss=f"{loss.item():.4f}")
    return total / max(count, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", help="folder with MNIST IDX files (default: embedded digits)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-fraction", type=float, default=0.2,
                    help="embedded digits only: share held out for validation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="write the trained weights here (safetensors)")
    ap.add_argument("--json", help="write per-epoch metrics here")
    ap.add_argument("--no-progress", action="store_true",
                    help="no tqdm progress bar (it shows only on rank 0 and only when stdout is "
                         "a terminal; otherwise one line per epoch)")
    ap.add_argument("--checkpoint-dir", default=dt.env.checkpoint_dir(),
                    help="save every epoch here and resume from it (default: "
                         f"${dt.env.CHECKPOINT_DIR}, set by disttrain-launch --checkpoint-dir)")
    args = ap.parse_args(argv)

    # NOTE: opt in to glibc keeping freed blocks (disttrain.backend.tune_malloc): each step
    # reallocates its activations and gradients (6% faster deep-MLP steps)
    dt.tune_malloc()
    dt.manual_seed(args.seed)
    comm = dist.init() if dist.launched_with_mpi() else None
    rank, size = (comm.rank, comm.size) if comm else (0, 1)
    say = print if rank == 0 else (lambda *a, **k: None)
    train_set, val_set, name = load_data(args)
    model = SimpleCNN()
    if comm:  # one replica per rank, each on its shard of every epoch
        model = dist.DataParallel(model, comm)
        sampler = DistributedSampler(train_set, size, rank, shuffle=True, seed=args.seed)
        if args.batch_size % size:
            raise ValueError(f"--batch-size {args.batch_size} must divide evenly over {size} "
                             "ranks (it is the global batch)")
        train_loader = DataLoader(train_set, batch_size=args.batch_size // size,
                                  sampler=sampler)
        val_loader = DataLoader(val_set, batch_size=512,
                                sampler=DistributedSampler(val_set, size, rank, shuffle=False))
    else:
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                  seed=args.seed)
        val_loader = DataLoader(val_set, batch_size=512)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    say(f"{name}: {len(train_set)} train / {len(val_set)} validation images, {size} rank(s)")

    history, first_epoch, ckpt = [], 1, None
    if args.checkpoint_dir:  # crash-safe: resume after the last finished epoch
        ckpt = dist.CheckpointManager(args.checkpoint_dir, comm or dist.init())
        stateful = dict(model=model, optimizer=optimizer, loader=train_loader)
        first_epoch = ckpt.restore(**stateful) + 1
        if first_epoch > 1:
            say(f"resumed from {args.checkpoint_dir} after epoch {first_epoch - 1}")
    for epoch in range(first_epoch, args.epochs + 1):
        t0 = time.perf_counter()
        if comm:
            sampler.set_epoch(epoch)
        loss = train_epoch(model, train_loader, optimizer, loss_fn, epoch,
                           shows_progress_bar(rank, disabled=args.no_progress))
        if comm:
            loss = comm.allreduce_obj(loss) / size
        accuracy = evaluate(model, val_loader, comm)
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch, "loss": loss, "val_accuracy": accuracy, "s": seconds})
        say(f"epoch {epoch:3d}  loss {loss:.4f}  val accuracy {accuracy:.4f}  "
            f"({seconds:.1f} s)", flush=True)
        if ckpt is not None:
            ckpt.save(epoch, **stateful)
    if history:
        say(f"final validation accuracy: {history[-1]['val_accuracy']:.4f}")
    model = model.module if comm else model
    if args.save and rank == 0:
        dt.save(model.state_dict(), args.save)
        print(f"saved weights to {args.save}")
    if args.json and rank == 0:
        with open(args.json, "w") as f:
            json.dump(history, f, indent=2)
    return history


if __name__ == "__main__":
    main()
