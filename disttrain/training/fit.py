"""fit() and Trainer: the training loop (train, validate, metrics, scheduler, callbacks,
checkpoint/resume, gradient clipping and accumulation, progress, logs), the same in one process
and under DataParallel. Core module: never imports mpi4py or disttrain.distributed; ranks are
reached through a duck-typed communicator (`comm=`, else the world one dist.init() recorded)."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy

from disttrain import env
from disttrain.metrics.reduction import check_comm, sum_over_ranks
from disttrain.nn.utils import clip_grad_norm_
from disttrain.optim.lr_scheduler import ReduceLROnPlateau
from disttrain.tensor import no_grad
from disttrain.training.loggers import CSVLogger, TensorBoardLogger, summary_writer_class
from disttrain.training.progress import EpochProgress, format_epoch, shows_progress_bar


class Trainer:
    """The state of one fit() run; callbacks receive it as `trainer`. Build it with the same
    arguments as fit() (less the loaders and epochs), then call `fit(train_loader, ...)`.

    Attributes callbacks may read: model, optimizer, comm, rank, world_size, history,
    start_epoch (1, or the epoch after the restored checkpoint), global_step (optimizer
    steps done), stop_training (set True to stop after this epoch).

    Example:
        >>> trainer = Trainer(model, opt, nn.CrossEntropyLoss(), grad_clip=1.0,
        ...                   accumulation_steps=4, callbacks=[EarlyStopping(patience=2)])
        >>> history = trainer.fit(train_loader, val_loader, epochs=10)
    """

    def __init__(self, model, optimizer, loss_fn: Callable, *, metrics: dict | None = None,
                 train_metrics: bool = False, scheduler=None, callbacks: Iterable = (),
                 checkpoint=None, log_dir=None, tensorboard: bool = True,
                 log_every_n_steps: int = 10, grad_clip: float | None = None,
                 accumulation_steps: int = 1, monitor: str = "val_loss",
                 progress: bool | None = None, verbose: bool = True, device=None, comm=None):
        _check_options(metrics, grad_clip, accumulation_steps)
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.metrics, self.scheduler, self.monitor = dict(metrics or {}), scheduler, monitor
        self.train_metrics = ({k: _fresh_copy(m) for k, m in self.metrics.items()}
                              if train_metrics else {})
        self.callbacks, self.checkpoint, self.device = list(callbacks), checkpoint, device
        self.grad_clip, self.accumulation_steps = grad_clip, accumulation_steps
        self.comm = check_comm(env.world_comm() if comm is None else comm, "fit")
        self.rank = 0 if self.comm is None else self.comm.rank
        self.world_size = 1 if self.comm is None else self.comm.size
        self.show_bar = shows_progress_bar(self.rank, disabled=progress is False) or (
            progress is True and self.rank == 0)
        self.verbose = verbose
        self.loggers = self._loggers(log_dir, tensorboard, log_every_n_steps)
        self.state = {"history": [], "global_step": 0, "stopped": False}
        self.start_epoch, self.stop_training = 1, False

    @property
    def history(self) -> list[dict]:
        return self.state["history"]

    @property
    def global_step(self) -> int:
        return self.state["global_step"]

    def say(self, text: str) -> None:
        """Prints `text` on rank 0 (when verbose)."""
        if self.rank == 0 and self.verbose:
            print(text, flush=True)

    def _loggers(self, log_dir, tensorboard: bool, log_every_n_steps: int) -> list:
        if log_dir is None:
            return []
        if tensorboard:
            summary_writer_class()  # NOTE: on every rank: all raise alike when it is missing
        if self.rank != 0:
            return []
        loggers = [CSVLogger(Path(log_dir) / "metrics.csv")]
        if tensorboard:
            loggers.append(TensorBoardLogger(log_dir, log_every_n_steps))
        return loggers

    # ---------------------------------------------------------------- the run
    def fit(self, train_loader, val_loader=None, epochs: int = 1) -> list[dict]:
        """Trains for epochs start_epoch .. `epochs`; returns the history (one dict per epoch,
        restored epochs included)."""
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"fit: epochs must be an int >= 1, got {epochs!r}")
        if self.accumulation_steps > 1 and not hasattr(train_loader, "__len__"):
            raise TypeError("fit: accumulation_steps > 1 needs a train_loader with len() (the "
                            f"last group of an epoch may be short), got "
                            f"{type(train_loader).__name__}")
        self.train_loader, self.val_loader = train_loader, val_loader
        self.stop_training = False
        self._check_batch_counts()
        self._restore()
        if self.state["stopped"]:
            self.say(f"training had stopped early after epoch {self.start_epoch - 1}")
            self._call("on_train_end")  # NOTE: e.g. EarlyStopping restores the best weights
            return self.history
        self._call("on_train_begin")
        try:
            for epoch in range(self.start_epoch, epochs + 1):
                self._run_epoch(epoch)
                if self.stop_training:
                    self.say(f"stopping early after epoch {epoch}")
                    break
        finally:
            self._call("on_train_end")
        return self.history

    def _check_batch_counts(self) -> None:
        """Raises on every rank when the ranks' train loaders differ in length: DataParallel's
        gradient allreduces would not pair up (a hang or garbage), e.g. shards of unequal
        size without DistributedSampler."""
        if self.comm is None or self.world_size == 1:
            return
        mine = _length(self.train_loader)
        counts = self.comm.allgather(numpy.array([-1 if mine is None else mine], numpy.int64))
        if (counts != counts[0]).any():
            per_rank = {r: int(c) for r, c in enumerate(counts.reshape(-1))}
            raise ValueError(f"fit: rank {self.rank}: train_loader yields a different number "
                             f"of batches per rank {per_rank}: every rank must take as many "
                             "optimizer steps; shard with DistributedSampler (equal shards)")

    def _call(self, hook: str, *args) -> None:
        for callback in (*self.callbacks, *self.loggers):
            method = getattr(callback, hook, None)  # NOTE: a duck-typed callback may lack some
            if method is not None:
                method(self, *args)

    def _stateful(self) -> dict:
        stateful = {"model": self.model, "optimizer": self.optimizer, "fit": self.state}
        if callable(getattr(self.train_loader, "state_dict", None)):
            stateful["loader"] = self.train_loader
        if self.scheduler is not None:
            stateful["scheduler"] = self.scheduler
        for i, callback in enumerate(self.callbacks):
            if callable(getattr(callback, "state_dict", None)):
                stateful[f"callback{i}_{type(callback).__name__}"] = callback
        return stateful

    def _restore(self) -> None:
        if self.checkpoint is None:
            return
        last = self.checkpoint.restore(**self._stateful())
        self.start_epoch = last + 1
        if last:
            self.say(f"resumed from {self.checkpoint.dir} after epoch {last}")

    def _run_epoch(self, epoch: int) -> None:
        self._call("on_epoch_begin", epoch)
        start = time.perf_counter()
        bar = EpochProgress(epoch, _length(self.train_loader), self.show_bar)
        logs = {"epoch": epoch, **self._train_epoch(epoch, bar)}
        if self.val_loader is not None:
            logs.update(self._evaluate(self.val_loader, self.metrics, "val_"))
        logs["lr"] = float(self.optimizer.param_groups[0]["lr"])
        logs["samples_per_s"] = logs.pop("_samples") / max(logs.pop("_train_s"), 1e-9)
        logs["time_s"] = time.perf_counter() - start
        self._step_scheduler(logs)
        bar.close(logs)
        self.history.append(logs)
        self.say(format_epoch(logs))
        self._call("on_epoch_end", epoch, logs)
        # NOTE: any rank's stop stops all: a rank leaving the loop alone would hang the others
        self.stop_training = self._on_any_rank(self.stop_training)
        self.state["stopped"] = self.stop_training
        if self.checkpoint is not None:
            self.checkpoint.save(epoch, **self._stateful())

    # ---------------------------------------------------------------- training
    def _train_epoch(self, epoch: int, bar: EpochProgress) -> dict:
        self.model.train()
        sampler = getattr(self.train_loader, "sampler", None)
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(epoch)  # NOTE: DistributedSampler reshuffles per epoch
        for metric in self.train_metrics.values():
            metric.reset()
        total, start = numpy.zeros(2), time.perf_counter()
        n_batches, group_loss = _length(self.train_loader), []
        self.optimizer.zero_grad()
        for i, (x, y) in enumerate(self.train_loader):
            x, y = self._to_device(x, y)
            is_final, group_size = self._group_of(i, n_batches)
            output, loss = self._micro_step(x, y, group_size, is_final)
            total += (loss * y.shape[0], y.shape[0])
            group_loss.append(loss)
            for metric in self.train_metrics.values():
                metric.update(output.detach(), y)
            bar.update(total[0] / total[1])
            if is_final:
                self._after_step(sum(group_loss) / len(group_loss), int(total[1]))
                group_loss = []
        train_s = time.perf_counter() - start
        loss_sum, samples = sum_over_ranks(self.comm, total)
        logs = {"loss": float(loss_sum / max(samples, 1)), "_samples": float(samples),
                "_train_s": train_s}
        logs.update({f"train_{k}": _loggable(m.compute()) for k, m in self.train_metrics.items()})
        return logs

    def _group_of(self, i: int, n_batches: int | None) -> tuple[bool, int]:
        """(whether micro-batch i ends its accumulation group, the group's size)."""
        steps = self.accumulation_steps
        if steps == 1:
            return True, 1
        first = (i // steps) * steps
        size = min(steps, n_batches - first)
        return i - first == size - 1, size

    def _micro_step(self, x, y, group_size: int, is_final: bool):
        # NOTE: DataParallel's no_sync: the gradients of non-final micro-batches stay local;
        # the final backward averages the accumulated sums over ranks (one allreduce a step)
        no_sync = getattr(self.model, "no_sync", None)
        skip_sync = not is_final and callable(no_sync)
        with no_sync() if skip_sync else contextlib.nullcontext():
            output = self.model(x)
            loss = self.loss_fn(output, y)
            (loss / group_size if group_size > 1 else loss).backward()
        if is_final:
            if self.grad_clip is not None:
                clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad()
        return output, loss.item()

    def _after_step(self, loss: float, epoch_samples: int) -> None:
        self.state["global_step"] += 1
        logs = {"loss": loss, "lr": float(self.optimizer.param_groups[0]["lr"]),
                "epoch_samples": epoch_samples}
        self._call("on_train_batch_end", self.global_step, logs)

    def _to_device(self, x, y):
        if self.device is None:
            return x, y
        return x.to(self.device), y.to(self.device)

    # ---------------------------------------------------------------- validation
    def _evaluate(self, loader, metrics: dict, prefix: str) -> dict:
        self.model.eval()
        for metric in metrics.values():
            metric.reset()
        total = numpy.zeros(2)
        with no_grad():
            for x, y in loader:
                x, y = self._to_device(x, y)
                output = self.model(x)
                total += (self.loss_fn(output, y).item() * y.shape[0], y.shape[0])
                for metric in metrics.values():
                    metric.update(output, y)
        self.model.train()
        loss_sum, samples = sum_over_ranks(self.comm, total)
        logs = {f"{prefix}loss": float(loss_sum / samples) if samples else float("nan")}
        logs.update({f"{prefix}{k}": _loggable(m.compute()) for k, m in metrics.items()})
        return logs

    def _step_scheduler(self, logs: dict) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, ReduceLROnPlateau):
            if self.monitor not in logs:
                raise ValueError(f"fit: monitor={self.monitor!r} (the value ReduceLROnPlateau "
                                 f"steps with) is not in the epoch's logs (keys: "
                                 f"{sorted(logs)}); pass monitor= one of them")
            self.scheduler.step(logs[self.monitor])
        else:
            self.scheduler.step()

    def _on_any_rank(self, flag: bool) -> bool:
        if self.comm is None:
            return bool(flag)
        return bool(sum_over_ranks(self.comm, numpy.array([float(flag)]))[0] > 0)


def _check_options(metrics, grad_clip, accumulation_steps) -> None:
    if metrics is not None and not isinstance(metrics, dict):
        raise TypeError(f"fit: metrics must be a dict of name -> metric (e.g. {{'accuracy': "
                        f"Accuracy(10)}}), got {type(metrics).__name__}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"fit: grad_clip must be a max norm > 0 or None, got {grad_clip!r}")
    if not isinstance(accumulation_steps, int) or accumulation_steps < 1:
        raise ValueError(f"fit: accumulation_steps must be an int >= 1, got "
                         f"{accumulation_steps!r}")


def _fresh_copy(metric):
    """A metric of the same settings with its own state (for the training-set metrics)."""
    twin = copy.copy(metric)
    twin.reset()
    return twin


def _length(loader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _loggable(value):
    """A metric's result for the history: a float, or a list for per-class results."""
    array = numpy.asarray(value)
    return float(array) if array.ndim == 0 else array.tolist()


def fit(model, optimizer, train_loader, val_loader=None, *, epochs: int, loss_fn: Callable,
        **options) -> list[dict]:
    """Trains `model` for `epochs` epochs and returns the history: one dict per epoch with
    "epoch", "loss" (mean training loss), "val_loss" and "val_<name>" per metric (with
    val_loader), "train_<name>" (train_metrics=True), "lr" (of the epoch), "samples_per_s"
    (training throughput over all ranks) and "time_s".

    Works unchanged under DataParallel (and mpirun): every number in the history is reduced
    over ranks before callbacks, the scheduler and early stopping see it, so all ranks take
    the same decisions; only rank 0 prints, draws the progress bar and writes logs.

    Args:
        model: a Module (or DataParallel); model(x) gives what loss_fn and metrics take.
        optimizer: its optimizer.
        train_loader: yields (x, y) batches (a DataLoader; a DistributedSampler in it gets
            set_epoch(epoch)).
        val_loader: (x, y) batches to validate on after every epoch (each rank its shard).
        epochs: the last epoch to train (counting from 1; a resumed run continues to it).
        loss_fn: loss_fn(model(x), y) -> a 0-d Tensor (mean over the batch).
        metrics: {name: stateful metric} (disttrain.metrics.Accuracy, F1Score, ...), computed
            on validation (reduced over ranks: their default comm is the world's).
        train_metrics: also compute copies of `metrics` on the training batches.
        scheduler: an lr scheduler stepped once per epoch; ReduceLROnPlateau is stepped with
            the history's `monitor` value.
        callbacks: Callback objects (e.g. EarlyStopping(monitor="val_loss", patience=3)).
        checkpoint: a dist.CheckpointManager: restored before the first epoch (model,
            optimizer, loader, scheduler, callbacks with state_dict, history) and saved after
            every epoch, so a restarted run resumes bit for bit (a run that had stopped
            early returns its history without training).
        log_dir: write `log_dir/metrics.csv` and (tensorboard=True, needs the `log` extra)
            TensorBoard event files there, on rank 0.
        tensorboard: with log_dir, also write TensorBoard events.
        log_every_n_steps: TensorBoard step scalars every n optimizer steps.
        grad_clip: clip the gradients' joint 2-norm to this before each optimizer step.
        accumulation_steps: micro-batches per optimizer step (their gradients are averaged;
            under DataParallel the non-final ones run in no_sync()).
        monitor: the history key ReduceLROnPlateau follows (default "val_loss").
        progress: None: a tqdm bar on rank 0 when stdout is a terminal; True: on rank 0
            always; False: never (the epoch's summary line is printed either way).
        verbose: print one summary line per epoch on rank 0.
        device: move every batch there (x.to(device), y.to(device)).
        comm: the communicator to reduce over (default: the world Communicator after
            dist.init(), else none). For DataParallel over a subgroup pass its comm
            (`comm=model.comm`), and build the metrics with the same comm (theirs defaults
            to the world's too).

    Example:
        >>> from disttrain.metrics import Accuracy, F1Score
        >>> from disttrain.training import EarlyStopping, fit
        >>> history = fit(model, optim.Adam(model.parameters()), train_loader, val_loader,
        ...               epochs=20, loss_fn=nn.CrossEntropyLoss(),
        ...               metrics={"accuracy": Accuracy(10), "f1": F1Score(10, average="macro")},
        ...               callbacks=[EarlyStopping("val_loss", patience=3)], log_dir="runs/a")
        >>> history[-1]["val_accuracy"]
        0.97...
    """
    trainer = Trainer(model, optimizer, loss_fn, **options)
    return trainer.fit(train_loader, val_loader, epochs)
