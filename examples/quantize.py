"""Int8 post-training quantization of the main job's CNN, checked in ONNX Runtime.

Trains examples/mnist_cnn.py's SimpleCNN on the embedded digits (or loads its weights with
--checkpoint, e.g. from `python examples/mnist_cnn.py --save cnn.safetensors`), writes it as
the equivalent nn.Sequential (eager-mode quantization needs every op as a module), calibrates
on 256 training images, converts to int8 (Conv2d+ReLU and Linear+ReLU fused, uint8
activations, int8 per-channel weights), exports both models with disttrain.onnx.export and
prints float32 vs int8: validation accuracy, file size, and inference latency at batch 1 and
256 in disttrain and in ONNX Runtime (median of interleaved runs, --threads threads each).

    python examples/quantize.py                         # trains 5 epochs first
    python examples/quantize.py --checkpoint cnn.safetensors --json result.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import tempfile
import time
from collections import OrderedDict

import numpy

import disttrain as dt
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.data import DataLoader, datasets
from disttrain.quantization import convert, prepare


def load_simple_cnn_class():
    """examples/mnist_cnn.py's SimpleCNN (the main job's model), imported from its file."""
    path = pathlib.Path(__file__).with_name("mnist_cnn.py")
    spec = importlib.util.spec_from_file_location("mnist_cnn", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleCNN


def as_sequential(cnn) -> nn.Sequential:
    """SimpleCNN as an nn.Sequential of the same modules (its forward's .relu() and
    .flatten(1) as nn.ReLU and nn.Flatten); state_dict keys stay conv.*, fc1.*, fc2.*."""
    return nn.Sequential(OrderedDict(
        conv=cnn.conv, relu1=nn.ReLU(), pool=cnn.pool, flatten=nn.Flatten(),
        fc1=cnn.fc1, relu2=nn.ReLU(), fc2=cnn.fc2))


def train(model, train_set, args) -> None:
    optimizer, loss_fn = optim.Adam(model.parameters(), lr=args.lr), nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        total, count = 0.0, 0
        for x, y in DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                               seed=args.seed + epoch):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(y), count + len(y)
        print(f"epoch {epoch}: training loss {total / count:.4f}", flush=True)


def stack(dataset, count=None):
    count = len(dataset) if count is None else count
    images = numpy.stack([dataset[i][0] for i in range(count)])
    return images, numpy.array([int(dataset[i][1]) for i in range(count)])


def predict(model, images) -> numpy.ndarray:
    with dt.no_grad():
        return model(dt.tensor(images)).numpy()


def latencies_ms(runners: dict, images, batch: int, repeats: int, clock) -> dict:
    """{name: median ms} of runner(batch of images), runs of all runners interleaved so
    machine noise hits each alike; clock: time.perf_counter (wall) or time.process_time."""
    x = images[:batch]
    for run in runners.values():  # warm-up
        run(x)
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = clock()
            run(x)
            times[name].append((clock() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def onnx_session(model, example, path, threads: int):
    import onnxruntime as ort

    dt.onnx.export(model, dt.tensor(example), str(path), input_names=["x"],
                   output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = threads, 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def measure(models: dict, images, labels, out_dir, args) -> dict:
    """Accuracy, file sizes and latencies of the float32 and int8 models."""
    result = {}
    for name, model in models.items():
        path = out_dir / f"{name}.safetensors"
        dt.save(model.state_dict(), str(path))
        logits = predict(model, images)
        session = onnx_session(model, images[:2], out_dir / f"{name}.onnx", args.threads)
        ort_logits = session(images)
        result[name] = {"accuracy": float((logits.argmax(1) == labels).mean()),
                        "onnx_accuracy": float((ort_logits.argmax(1) == labels).mean()),
                        "file_bytes": path.stat().st_size,
                        "onnx_file_bytes": (out_dir / f"{name}.onnx").stat().st_size,
                        "logits": logits, "ort_logits": ort_logits, "session": session}
    for batch in (1, 256):
        runners = {}
        for name, model in models.items():
            runners[f"disttrain {name}"] = lambda x, m=model: predict(m, x)
            runners[f"onnxruntime {name}"] = result[name]["session"]
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        for key, ms in latencies_ms(runners, images, batch, args.repeats, clock).items():
            runtime, name = key.split()
            result[name][f"{runtime}_ms_batch{batch}"] = ms
    return result


def agreement(result: dict, output_scale: float) -> dict:
    ours, theirs = result["int8"]["logits"], result["int8"]["ort_logits"]
    return {"argmax_agreement": float((ours.argmax(1) == theirs.argmax(1)).mean()),
            "max_abs_logit_diff": float(numpy.abs(ours - theirs).max()),
            "output_scale": output_scale}


def print_table(result: dict, check: dict) -> None:
    f32, i8 = result["float32"], result["int8"]
    rows = [("validation accuracy (disttrain)", "accuracy", "{:.4f}"),
            ("validation accuracy (ONNX Runtime)", "onnx_accuracy", "{:.4f}"),
            ("file size, safetensors (bytes)", "file_bytes", "{:,}"),
            ("file size, ONNX (bytes)", "onnx_file_bytes", "{:,}")]
    rows += [(f"latency batch {b}, {rt} (ms)", f"{rt.replace(' ', '')}_ms_batch{b}", "{:.3f}")
             for rt in ("disttrain", "onnxruntime") for b in (1, 256)]
    print(f"| {'':36} | {'float32':>12} | {'int8':>12} | {'int8/float32':>12} |")
    print(f"|{'-' * 38}|{'-' * 14}|{'-' * 14}|{'-' * 14}|")
    for label, key, fmt in rows:
        ratio = i8[key] / f32[key] if f32[key] else float("nan")
        print(f"| {label:36} | {fmt.format(f32[key]):>12} | {fmt.format(i8[key]):>12} | "
              f"{ratio:>11.3f}x |")
    print(f"ONNX Runtime int8 vs disttrain int8: argmax agreement "
          f"{100 * check['argmax_agreement']:.2f}%, max |logit difference| "
          f"{check['max_abs_logit_diff']:.3g} (output scale {check['output_scale']:.3g})")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="SimpleCNN weights (safetensors) instead of training")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibration-images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=30, help="timed runs per latency")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for disttrain's BLAS and ONNX Runtime (default 1)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="latency clock: wall time, or this process's CPU time (steadier on "
                         "a machine other jobs share; with --threads 1 both run one thread)")
    ap.add_argument("--out-dir", help="where the .safetensors/.onnx files go (default: a "
                                      "temporary folder)")
    ap.add_argument("--json", help="write the measurements here")
    return ap.parse_args(argv)


def float_and_int8_models(train_set, args) -> tuple:
    """(the trained float32 Sequential, its int8 conversion calibrated on training images)."""
    cnn = load_simple_cnn_class()()
    if args.checkpoint:
        cnn.load_state_dict(dt.load(args.checkpoint))
    else:
        train(cnn, train_set, args)
    float_model = as_sequential(cnn).eval()
    prepared = prepare(float_model)  # fuses conv+relu1, fc1+relu2; HistogramObserver
    calibration, _ = stack(train_set, args.calibration_images)
    predict(prepared, calibration)
    return float_model, convert(prepared)


def main(argv=None):
    args = parse_args(argv)
    dt.manual_seed(args.seed)
    dt.set_num_threads(args.threads)
    train_set = datasets.Digits("train", val_fraction=0.2, seed=args.seed)
    images, labels = stack(datasets.Digits("val", val_fraction=0.2, seed=args.seed))
    float_model, int8_model = float_and_int8_models(train_set, args)
    print(int8_model)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = pathlib.Path(args.out_dir or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        result = measure({"float32": float_model, "int8": int8_model}, images, labels,
                         out_dir, args)
    check = agreement(result, int8_model[-2].qparams[0])
    print(f"latency: median of {args.repeats} interleaved runs, {args.clock} clock, "
          f"{args.threads} thread(s)")
    print_table(result, check)
    if args.json:
        drop = ("logits", "ort_logits", "session")
        keep = {name: {k: v for k, v in r.items() if k not in drop}
                for name, r in result.items()}
        pathlib.Path(args.json).write_text(json.dumps({**keep, "agreement": check}, indent=2))
    return result, check


if __name__ == "__main__":
    main()
