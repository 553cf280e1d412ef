"""The PyTorch half of bench/train_vs_torch.sh: dexlab's MLP and GRU (models/src/model.rs) at the
same fixed shapes as models-bench (models/src/bin/models-bench.rs), trained with the same loop,
and one decision's latency under torch.inference_mode(). One JSON line per measurement.

Same data: the inputs and targets are the same splitmix64 counter hash of the seed as in the Rust
binary, bit for bit (both print a checksum). Same architecture: layer sizes, activations, dropout,
the GRU's gate layout (reset applied after the hidden product, biases on both products) and the
parameter count, which the shell script compares.

usage: torch_models.py --threads N [the models-bench flags]
"""
import argparse
import json
import time

import numpy as np
import torch
from torch import nn


class Mlp(nn.Module):
    """window*features -> hidden -> hidden -> 1, ReLU then dropout after each hidden layer."""

    def __init__(self, d_input, hidden, dropout=0.1):
        super().__init__()
        layers, d = [], d_input
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, 1)

    def forward(self, x):  # [batch, window, features] -> [batch, 1]
        return self.head(self.body(x.flatten(1)))


class GruModel(nn.Module):
    """A GRU over the window; dropout on the last hidden state, then a linear head."""

    def __init__(self, d_input, d_hidden, dropout=0.1):
        super().__init__()
        self.gru = nn.GRU(d_input, d_hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_hidden, 1)

    def forward(self, x):  # [batch, window, features] -> [batch, 1]
        h, _ = self.gru(x)
        return self.head(self.dropout(h[:, -1, :]))


def splitmix(seed, idx):
    """splitmix64 of seed and counter idx (uint64 array), as in models-bench."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (idx + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(seed, n):
    bits = (splitmix(seed, np.arange(n, dtype=np.uint64)) >> np.uint64(40)).astype(np.float32)
    return bits / np.float32(1 << 24) * np.float32(2.0) - np.float32(1.0)


def synthetic(seed, rows, window, features):
    per = window * features
    x = uniform(seed, rows * per).reshape(rows, window, features)
    noise = uniform(seed ^ 0x5EED, rows)
    last = x[:, window - 1, :]
    y = np.float32(0.5) * last[:, 0] - np.float32(0.25) * last[:, 1] + np.float32(0.1) * noise
    return x, y.astype(np.float32)


def checksum(a):
    return float(np.sum(a.astype(np.float64) ** 2))


def build(kind, a):
    if kind == "gru":
        return GruModel(a.features, a.hidden)
    return Mlp(a.features, [a.hidden, a.hidden])


def window(kind, a):
    return a.window if kind == "gru" else 1


def bench_train(kind, a):
    rows = a.gru_rows if kind == "gru" else a.mlp_rows
    epochs = a.gru_epochs if kind == "gru" else a.mlp_epochs
    w = window(kind, a)
    x_np, y_np = synthetic(a.seed, rows, w, a.features)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    torch.manual_seed(a.seed)
    model = build(kind, a)
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = nn.MSELoss()
    gen = torch.Generator().manual_seed(a.seed)
    first = last = None
    started, cpu_started = time.perf_counter(), time.process_time()
    for epoch in range(a.warmup_epochs + epochs):
        if epoch == a.warmup_epochs:
            started, cpu_started = time.perf_counter(), time.process_time()
        order = torch.randperm(rows, generator=gen)
        total = 0.0
        for i in range(0, rows, a.batch):
            idx = order[i : i + a.batch]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            out = model(xb).reshape(-1)
            loss = loss_fn(out, yb)
            total += loss.item() * len(idx)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        last = total / rows
        first = last if first is None else first
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {
        "bench": "train", "impl": "torch", "torch": torch.__version__, "model": kind,
        "threads": torch.get_num_threads(), "params": sum(p.numel() for p in model.parameters()),
        "rows": rows, "window": w, "features": a.features, "hidden": a.hidden, "batch": a.batch,
        "epochs": epochs, "warmup_epochs": a.warmup_epochs, "seconds": seconds,
        "samples_per_sec": rows * epochs / seconds, "cpu_seconds": cpu,
        "samples_per_cpu_sec": rows * epochs / cpu, "first_epoch_loss": first,
        "last_epoch_loss": last, "data_checksum": [checksum(x_np), checksum(y_np)],
    }


def percentiles(ns):
    ns = sorted(ns)
    pick = lambda q: ns[min(len(ns) - 1, round(q * (len(ns) - 1)))] / 1e3
    return {"calls": len(ns), "p50_us": pick(0.5), "p99_us": pick(0.99), "max_us": ns[-1] / 1e3,
            "mean_us": sum(ns) / len(ns) / 1e3}


def bench_latency(kind, a):
    """One decision as dexlab's Predictor makes it: raw Python floats in (a row, or the window's
    rows), standardised with the train statistics, forward, the prediction back in target units."""
    w, f = window(kind, a), a.features
    rows = 4096
    x_np, y_np = synthetic(a.seed, rows, 1, f)
    table = x_np.reshape(rows, f).astype(np.float64).tolist()
    mean = torch.tensor(x_np.reshape(rows, f).mean(axis=0))
    std = torch.tensor(x_np.reshape(rows, f).std(axis=0))
    t_mean, t_std = float(y_np.mean()), float(y_np.std())
    torch.manual_seed(a.seed)
    model = build(kind, a).eval()
    inputs = []
    for i in range(256):
        end = w + (i * 13) % (rows - w)
        inputs.append(table[end - w : end])

    def call(i):
        window_rows = inputs[i % len(inputs)]
        xt = (torch.tensor(window_rows, dtype=torch.float32) - mean) / std
        return model(xt.view(1, w, f)).item() * t_std + t_mean

    out = {}
    with torch.inference_mode():
        sink = 0.0
        for i in range(a.calls // 10 + 100):
            sink += call(i)
        ns = []
        for i in range(a.calls):
            t = time.perf_counter_ns()
            sink += call(i)
            ns.append(time.perf_counter_ns() - t)
        out["end_to_end"] = percentiles(ns)
        # The forward alone, on a prepared tensor: what is left without the Python-side input
        # handling.
        prepared = [((torch.tensor(r, dtype=torch.float32) - mean) / std).view(1, w, f) for r in inputs]
        ns = []
        for i in range(a.calls):
            xt = prepared[i % len(prepared)]
            t = time.perf_counter_ns()
            sink += model(xt).item()
            ns.append(time.perf_counter_ns() - t)
        out["forward_only"] = percentiles(ns)
    line = {"bench": "latency", "impl": "torch", "torch": torch.__version__, "model": kind,
            "path": "tensor(list) -> standardise -> forward -> item", "threads": torch.get_num_threads(),
            "params": sum(p.numel() for p in model.parameters()), "window": w, "features": f,
            "sink": sink == sink}
    line.update(out["end_to_end"])
    line["forward_only"] = out["forward_only"]
    return line


def bench_ops(a):
    """Single tensor operations at the GRU step's shapes, forward only (models-bench --what ops)."""
    b, f, h = a.batch, a.features, a.hidden

    def tensor(rows, cols, seed):
        return torch.from_numpy(uniform(seed, rows * cols).reshape(rows, cols))

    x, hid, gate = tensor(b, f, 1), tensor(b, h, 2), tensor(b, h, 3)
    gates = tensor(b, 2 * h, 6)
    w_in, w_hid = tensor(f, h, 4), tensor(h, h, 5)
    ops = [
        (f"tanh [{b}x{h}]", lambda: torch.tanh(gate)),
        (f"sigmoid [{b}x{h}]", lambda: torch.sigmoid(gate)),
        (f"GRU step tanh [{b}x{h}] (dexlab kernel)", lambda: torch.tanh(gate)),
        (f"GRU step sigmoid [{b}x{2 * h}] (dexlab kernel)", lambda: torch.sigmoid(gates)),
        (f"mul [{b}x{h}]", lambda: gate * hid),
        (f"matmul [{b}x{f}]x[{f}x{h}]", lambda: x @ w_in),
        (f"matmul [{b}x{h}]x[{h}x{h}]", lambda: hid @ w_hid),
    ]
    reps, lines = 2000, []
    with torch.inference_mode():
        for name, op in ops:
            for _ in range(reps // 10):
                op()
            t = time.perf_counter()
            for _ in range(reps):
                op()
            us = (time.perf_counter() - t) * 1e6 / reps
            lines.append({"bench": "op", "impl": "torch", "torch": torch.__version__, "op": name,
                          "threads": torch.get_num_threads(), "us_per_op": us})
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--what", default="train,fit,latency")
    p.add_argument("--model", default="mlp,gru")
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--mlp-rows", type=int, default=65536)
    p.add_argument("--gru-rows", type=int, default=16384)
    p.add_argument("--mlp-epochs", type=int, default=5)
    p.add_argument("--gru-epochs", type=int, default=2)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--calls", type=int, default=10000)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(a.threads)
    if "ops" in a.what.split(","):
        for line in bench_ops(a):
            print(json.dumps(line), flush=True)
    for kind in a.model.split(","):
        for what in a.what.split(","):
            if what == "train":
                print(json.dumps(bench_train(kind, a)), flush=True)
            elif what == "latency":
                print(json.dumps(bench_latency(kind, a)), flush=True)
            # dexlab's own fit() and burn's nn::Gru have no PyTorch counterpart of their own
            elif what not in ("fit", "ops", "train-burn-gru", "train-gru-ops"):
                raise SystemExit(f"--what {what}: expected train, train-burn-gru, train-gru-ops, fit, latency or ops")


if __name__ == "__main__":
    main()
