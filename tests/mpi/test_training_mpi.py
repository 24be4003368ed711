"""fit() under DataParallel on every rank: shards whose losses differ per rank, yet every rank
gets the same history (the reduced values) and takes the same early-stopping, plateau and stop
decisions, so no rank leaves the loop alone; only rank 0 writes logs. Run at 2 and 3 ranks."""

from __future__ import annotations

import numpy
import pytest
from mpi_helpers import same_on_all_ranks

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.data import DataLoader, TensorDataset
from disttrain.metrics import Accuracy
from disttrain.training import Callback, EarlyStopping, fit

CLASSES = 3


def shard_of(rank: int, n: int, noisy: bool):
    """Rank `rank`'s data: separable blobs; with `noisy`, random labels (a loss that grows
    while the other ranks' falls)."""
    rng = numpy.random.default_rng(100 + rank)
    y = rng.integers(0, CLASSES, n)
    x = (rng.normal(size=(n, 2)) * 0.6 + numpy.eye(CLASSES)[y][:, :2] * 2).astype(numpy.float32)
    return x, (rng.integers(0, CLASSES, n) if noisy else y)


def loaders(rank: int):
    # NOTE: as many training batches on every rank (DataParallel's allreduces pair up);
    # validation shards may differ in size
    train = DataLoader(TensorDataset(*shard_of(rank, 40, False)), batch_size=8, shuffle=True,
                       seed=rank)
    val = TensorDataset(*shard_of(50 + rank, 10 + 7 * rank, noisy=rank == 1))
    return train, DataLoader(val, batch_size=6)


def train(comm, epochs: int, plateau: bool = False, **options):
    dt.manual_seed(comm.rank)  # NOTE: DataParallel broadcasts rank 0's weights
    model = dist.DataParallel(nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3)),
                              comm)
    optimizer = optim.SGD(model.parameters(), lr=0.2)
    if plateau:
        options["scheduler"] = optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, patience=0, factor=0.5, threshold=0.05)
    train_loader, val_loader = loaders(comm.rank)
    history = fit(model, optimizer, train_loader, val_loader, epochs=epochs,
                  loss_fn=nn.CrossEntropyLoss(), progress=False, verbose=False, **options)
    return model, optimizer, history


def decisions(history: list[dict]) -> list[dict]:
    """The history less its timings (which differ per rank)."""
    return [{k: v for k, v in h.items() if k not in ("time_s", "samples_per_s")}
            for h in history]


@pytest.mark.mpi(min_size=2)
def test_every_rank_gets_the_same_history_and_stops_together(comm):
    stopper = EarlyStopping("val_loss", patience=1)
    model, optimizer, history = train(
        comm, 30, metrics={"accuracy": Accuracy(CLASSES)}, callbacks=[stopper],
        plateau=True, accumulation_steps=2, grad_clip=5.0)
    everyone = comm.allgather_obj(decisions(history))
    weights = [same_on_all_ranks(comm, p.detach().numpy()) for p in model.parameters()]
    shards = [loaders(r)[1].dataset.arrays() for r in range(comm.size)]
    with dt.no_grad():
        local = [nn.CrossEntropyLoss()(model.module(dt.tensor(x)), dt.tensor(y)).item()
                 for x, y in shards]
        x, y = (numpy.concatenate(parts) for parts in zip(*shards))
        logits = model.module(dt.tensor(x))
        loss = nn.CrossEntropyLoss()(logits, dt.tensor(y)).item()
    assert len(set(numpy.round(local, 3))) == comm.size, local  # NOTE: the ranks disagree
    assert all(rows == everyone[0] for rows in everyone), everyone
    assert all(weights)
    assert len(history) < 30 and stopper.stopped_epoch == len(history)
    assert history[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)  # NOTE: of every shard
    assert history[-1]["val_accuracy"] == float((logits.numpy().argmax(1) == y).mean())
    assert history[-1]["lr"] < 0.2  # NOTE: the plateau cut it, identically on every rank


@pytest.mark.mpi(min_size=2)
def test_a_callback_stopping_one_rank_stops_every_rank(comm):
    class StopOnLastRank(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2 and trainer.rank == trainer.world_size - 1:
                trainer.stop_training = True

    _, _, history = train(comm, 6, callbacks=[StopOnLastRank()])
    lengths = comm.allgather_obj(len(history))
    assert lengths == [2] * comm.size


def test_only_rank_0_writes_logs(comm, mpi_tmp_path):
    pytest.importorskip("tensorboardX")
    _, _, history = train(comm, 2, log_dir=mpi_tmp_path / "logs")
    comm.barrier()
    files = sorted(p.name for p in (mpi_tmp_path / "logs").iterdir())
    rows = (mpi_tmp_path / "logs" / "metrics.csv").read_text().splitlines()
    assert len(files) == 2 and "metrics.csv" in files, files
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2"]
    assert float(rows[2].split(",")[2]) == history[1]["val_loss"]


@pytest.mark.mpi(min_size=2)
def test_unequal_batch_counts_raise_on_every_rank(comm):
    dt.manual_seed(0)
    model = dist.DataParallel(nn.Linear(2, 3), comm)
    train_loader = DataLoader(TensorDataset(*shard_of(comm.rank, 8 + 8 * comm.rank, False)),
                              batch_size=8)
    counts = {r: 1 + r for r in range(comm.size)}
    with pytest.raises(ValueError, match=rf"fit: rank {comm.rank}: train_loader yields a "
                                         rf"different number of batches per rank {counts}"):
        fit(model, optim.SGD(model.parameters(), lr=0.1), train_loader, epochs=1,
            loss_fn=nn.CrossEntropyLoss(), verbose=False)
