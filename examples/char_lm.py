"""A character-level language model on the Python standard library's own source files.

The corpus is every machine's copy of the stdlib (`sysconfig.get_paths()["stdlib"]`): a fixed,
seeded selection of its top-level .py files, read as bytes (vocabulary: the 256 byte values),
the last --val-fraction held out for validation. Each epoch prints the training loss, the
validation bits per character and the training tokens/s; the trained weights and the model's
configuration go to one safetensors file (--checkpoint), from which --sample generates text.

    python examples/char_lm.py --model lstm                 # or gru, transformer
    launch/local.sh 2 examples/char_lm.py --model gru       # DataParallel, same global batch
    launch/local.sh 2 examples/char_lm.py --model transformer --pipeline 2   # 2-stage Pipeline
    python examples/char_lm.py --model lstm --sample 400 --prompt "def "     # from --checkpoint

--batch-size is the global batch (each data-parallel replica takes batch_size / replicas), so
the optimisation is the same at any rank count. --max-bytes, --layers, --d-model etc. make tiny
smoke runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sysconfig
import time
from pathlib import Path

import numpy as np

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.nn.functional as F
import disttrain.optim as optim
from disttrain.data import DataLoader, DistributedSampler, TensorDataset

VOCAB = 256  # NOTE: bytes, not the corpus's characters: any checkpoint samples on any machine


def stdlib_corpus(n_files: int, seed: int, max_bytes: int) -> bytes:
    """`n_files` top-level stdlib .py files picked with `seed` (sorted, so the same selection
    on every rank and run of one Python version), concatenated, cut to `max_bytes`."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))
    if not files:
        raise FileNotFoundError(f"char_lm: no .py files in the stdlib folder {root}")
    picked = np.random.default_rng(seed).choice(len(files), min(n_files, len(files)),
                                                replace=False)
    data = b"".join(files[i].read_bytes() for i in sorted(picked))
    return data[:max_bytes]


def windows(data: bytes, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (input, next-byte target) windows of `seq_len` bytes, as int64 arrays."""
    tokens = np.frombuffer(data, np.uint8).astype(np.int64)
    n = (len(tokens) - 1) // seq_len
    if n < 1:
        raise ValueError(f"char_lm: {len(tokens)} bytes is too little text for one window of "
                         f"--seq-len {seq_len}")
    return (tokens[:n * seq_len].reshape(n, seq_len),
            tokens[1:n * seq_len + 1].reshape(n, seq_len))


def load_data(args) -> tuple[tuple, tuple]:
    """(train, validation) window arrays: the corpus's last --val-fraction is validation."""
    data = stdlib_corpus(args.files, args.seed, args.max_bytes)
    cut = int(len(data) * (1 - args.val_fraction))
    return windows(data[:cut], args.seq_len), windows(data[cut:], args.seq_len)


class RecurrentLM(nn.Module):
    """Embedding -> nn.LSTM / nn.GRU (batch_first) -> Linear over the byte vocabulary."""

    def __init__(self, kind: str, emb: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, emb)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = rnn(emb, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, x):
        out, _ = self.rnn(self.embed(x))
        return self.head(out)


class TokenPositionEmbedding(nn.Module):
    """Byte embedding plus a learned position embedding (positions < max_len)."""

    def __init__(self, d_model: int, max_len: int, dropout: float):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, d_model)
        self.positions = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.tokens(x) + self.positions(dt.arange(x.shape[1])))


class CausalEncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer (pre-norm, batch_first) that sees only earlier positions.

    NOTE: a layer of its own, not nn.TransformerEncoder(mask=...), so that the model is a flat
    nn.Sequential that dist.Pipeline can cut between encoder layers.
    """

    def __init__(self, d_model: int, nhead: int, ff: int, dropout: float):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model, nhead, ff, dropout, batch_first=True,
                                                norm_first=True)
        self._masks = {}

    def forward(self, x):
        t = x.shape[1]
        if t not in self._masks:  # additive float mask: -inf above the diagonal
            self._masks[t] = dt.tensor(np.triu(np.full((t, t), -np.inf, np.float32), 1))
        return self.layer(x, src_mask=self._masks[t])


def build_model(cfg: dict) -> nn.Module:
    """The model `cfg` (the saved configuration) describes; the transformer is a flat
    nn.Sequential: embedding, encoder layers, LayerNorm + Linear head."""
    if cfg["model"] in ("lstm", "gru"):
        return RecurrentLM(cfg["model"], cfg["d_model"], cfg["hidden"], cfg["layers"],
                           cfg["dropout"])
    d = cfg["d_model"]
    blocks = [CausalEncoderLayer(d, cfg["heads"], cfg["ff"], cfg["dropout"])
              for _ in range(cfg["layers"])]
    return nn.Sequential(TokenPositionEmbedding(d, cfg["seq_len"], cfg["dropout"]), *blocks,
                         nn.Sequential(nn.LayerNorm(d), nn.Linear(d, VOCAB)))


def lm_loss(logits, y):
    """Mean cross-entropy over every position of (batch, seq, vocab) logits."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def bits_per_char(model, loader, comm=None) -> float:
    """Validation loss in bits per byte over `loader` (over every rank's shard when comm is
    given), in eval mode, without a graph."""
    model.eval()
    total = count = 0.0
    with dt.no_grad():
        for x, y in loader:
            total += lm_loss(model(x), y).item() * y.numel()
            count += y.numel()
    model.train()
    if comm is not None:
        total, count = comm.allreduce_obj(total), comm.allreduce_obj(count)
    return total / max(count, 1) / math.log(2)


def train_step(model, optimizer, x, y, clip: float) -> float:
    optimizer.zero_grad()
    loss = lm_loss(model(x), y)
    loss.backward()
    if clip > 0:  # NOTE: recurrent nets' gradients spike now and then; clipping keeps Adam sane
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.item()


def epoch_line(epoch: int, loss: float, bpc: float, tokens: int, seconds: float) -> dict:
    return {"epoch": epoch, "loss": loss, "val_bpc": bpc, "tokens_per_s": tokens / seconds,
            "s": seconds}


def train_data_parallel(args, cfg: dict, comm, say) -> tuple[list, nn.Module]:
    """One process, or DataParallel over every rank with DistributedSampler shards."""
    (train_x, train_y), (val_x, val_y) = load_data(args)
    train_set, val_set = TensorDataset(train_x, train_y), TensorDataset(val_x, val_y)
    size, rank = (comm.size, comm.rank) if comm else (1, 0)
    model = build_model(cfg)
    if args.batch_size % size:
        raise ValueError(f"char_lm (rank {rank}): --batch-size {args.batch_size} must divide "
                         f"evenly over {size} ranks (it is the global batch)")
    if comm:  # one replica per rank, each on its shard of every epoch
        model = dist.DataParallel(model, comm)
        sampler = DistributedSampler(train_set, size, rank, shuffle=True, seed=args.seed)
        train_loader = DataLoader(train_set, batch_size=args.batch_size // size, sampler=sampler)
        val_loader = DataLoader(val_set, batch_size=64,
                                sampler=DistributedSampler(val_set, size, rank, shuffle=False))
    else:
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                  seed=args.seed)
        val_loader = DataLoader(val_set, batch_size=64)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    say(f"{cfg['model']}: {len(train_set)} train / {len(val_set)} validation windows of "
        f"{args.seq_len} bytes, {size} rank(s)")
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
        losses = []
        for x, y in train_loader:
            losses.append(train_step(model, optimizer, x, y, args.clip))
            if len(losses) == args.steps_per_epoch:
                break
        seconds = time.perf_counter() - t0
        loss = float(np.mean(losses))
        if comm:
            loss = comm.allreduce_obj(loss) / size
        bpc = bits_per_char(model, val_loader, comm)
        history.append(epoch_line(epoch, loss, bpc, len(losses) * args.batch_size
                                  * args.seq_len, seconds))
        say(format_epoch(history[-1]), flush=True)
        if ckpt is not None:
            ckpt.save(epoch, **stateful)
    return history, (model.module if comm else model)


def format_epoch(h: dict) -> str:
    return (f"epoch {h['epoch']:3d}  loss {h['loss']:.4f}  val {h['val_bpc']:.3f} bits/char  "
            f"{h['tokens_per_s']:,.0f} tokens/s  ({h['s']:.1f} s)")


def gather_stages(pipe, model: nn.Sequential, grid) -> None:
    """Loads every stage's parameters into this rank's copy of the whole model (stage keys
    "i.rest" are layer i of the stage, layer start + i of the model)."""
    start = pipe.partition[pipe.stage_index][0]
    mine = {}
    for key, value in pipe.state_dict().items():
        index, rest = key.split(".", 1)
        mine[f"{int(index) + start}.{rest}"] = value
    full = {}
    for part in grid.pp_comm.allgather_obj(mine):
        full.update(part)
    model.load_state_dict(full)


def train_pipeline(args, cfg: dict, comm, say) -> tuple[list, nn.Module]:
    """The transformer as a --pipeline-stage dist.Pipeline (times ranks/pipeline data-parallel
    replicas); every rank evaluates the gathered model on the whole validation set."""
    if cfg["model"] != "transformer" or comm.size % args.pipeline:
        raise ValueError(f"char_lm (rank {comm.rank}): --pipeline {args.pipeline} needs "
                         f"--model transformer and a rank count it divides, got --model "
                         f"{cfg['model']} on {comm.size} ranks")
    grid = dist.ProcessGrid(dp=comm.size // args.pipeline, pp=args.pipeline, comm=comm)
    (train_x, train_y), (val_x, val_y) = load_data(args)
    model = build_model(cfg)
    pipe = dist.Pipeline(model, grid, args.microbatches)
    optimizer = optim.Adam(pipe.parameters(), lr=args.lr)
    per_replica = args.batch_size // grid.dp
    steps = len(train_x) // args.batch_size
    steps = min(steps, args.steps_per_epoch) if args.steps_per_epoch else steps
    say(f"transformer: {len(train_x)} train / {len(val_x)} validation windows, dp={grid.dp} x "
        f"pp={grid.pp}, stages {pipe.partition}")
    history = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = np.random.default_rng(args.seed + epoch).permutation(len(train_x))  # all ranks
        losses = []
        for s in range(steps):
            batch = order[s * args.batch_size:(s + 1) * args.batch_size]
            mine = batch[grid.dp_rank * per_replica:(grid.dp_rank + 1) * per_replica]
            optimizer.zero_grad()
            losses.append(pipe.step(dt.tensor(train_x[mine]), dt.tensor(train_y[mine]),
                                    lm_loss).item())
            optimizer.step()
        seconds = time.perf_counter() - t0
        gather_stages(pipe, model, grid)
        bpc = bits_per_char(model, DataLoader(TensorDataset(val_x, val_y), batch_size=64))
        history.append(epoch_line(epoch, float(np.mean(losses)), bpc,
                                  steps * args.batch_size * args.seq_len, seconds))
        say(format_epoch(history[-1]), flush=True)
    return history, model


def sample(path: str, n: int, prompt: str, temperature: float, seed: int) -> str:
    """`n` bytes generated after `prompt` by the model saved at `path`, decoded as UTF-8."""
    saved = dt.load(path)
    cfg = saved["config"]
    model = build_model(cfg)
    model.load_state_dict(saved["model"])
    model.eval()
    rng = np.random.default_rng(seed)
    text = list(prompt.encode()) or [ord("\n")]
    with dt.no_grad():
        for _ in range(n):
            # NOTE: the last seq_len bytes as context: the positions the model was trained on
            window = np.array(text[-cfg["seq_len"]:], np.int64)[None]
            logits = model(dt.tensor(window)).numpy()[0, -1].astype(np.float64) / temperature
            p = np.exp(logits - logits.max())
            text.append(int(rng.choice(VOCAB, p=p / p.sum())))
    return bytes(text).decode("utf-8", errors="replace")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["lstm", "gru", "transformer"], default="transformer")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps-per-epoch", type=int, default=0, help="0: the whole training set")
    ap.add_argument("--batch-size", type=int, default=32, help="global batch")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: none)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=128, help="embedding width")
    ap.add_argument("--hidden", type=int, default=256, help="LSTM/GRU hidden size")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=512, help="transformer feed-forward width")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--files", type=int, default=40, help="stdlib .py files in the corpus")
    ap.add_argument("--max-bytes", type=int, default=1_000_000)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pipeline", type=int, default=1, metavar="STAGES",
                    help="transformer only: pipeline stages (needs that many ranks or more)")
    ap.add_argument("--microbatches", type=int, default=4, help="with --pipeline")
    ap.add_argument("--checkpoint", default="char_lm.safetensors",
                    help="the trained weights and configuration are written here; --sample "
                         "reads them")
    ap.add_argument("--checkpoint-dir", default=dt.env.checkpoint_dir(),
                    help="save every epoch here and resume from it (not with --pipeline)")
    ap.add_argument("--sample", type=int, default=0, metavar="N",
                    help="generate N bytes from --checkpoint instead of training")
    ap.add_argument("--prompt", default="def ")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--json", help="write per-epoch metrics here")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # NOTE: opt in to glibc keeping freed blocks (disttrain.backend.tune_malloc): each step
    # reallocates its activations and gradients (6% faster deep-MLP steps)
    dt.tune_malloc()
    if args.sample:
        text = sample(args.checkpoint, args.sample, args.prompt, args.temperature, args.seed)
        print(text)
        return text
    dt.manual_seed(args.seed)
    comm = dist.init() if dist.launched_with_mpi() or args.pipeline > 1 else None
    rank = comm.rank if comm else 0
    say = print if rank == 0 else (lambda *a, **k: None)
    cfg = {k: getattr(args, k) for k in ("model", "layers", "d_model", "hidden", "heads", "ff",
                                         "dropout", "seq_len")}
    if args.pipeline > 1:
        if args.checkpoint_dir:
            raise ValueError(f"char_lm (rank {rank}): --checkpoint-dir is for data-parallel "
                             f"runs, not --pipeline {args.pipeline}")
        history, model = train_pipeline(args, cfg, comm, say)
    else:
        history, model = train_data_parallel(args, cfg, comm, say)
    if history:
        say(f"final validation: {history[-1]['val_bpc']:.3f} bits/char")
    if rank == 0:
        dt.save({"config": cfg, "model": model.state_dict()}, args.checkpoint)
        print(f"saved the model to {args.checkpoint}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(history, f, indent=2)
    return history


if __name__ == "__main__":
    main()
