#!/usr/bin/env python3
"""PyTorch's side of `mixtape bench --vs-pytorch`: the same models, batches, optimizer and data shape.

Trains apps/models.cpp's models (the 784-1024-1024-10 MLP and the conv-BN-ReLU-pool x2 CNN) with Adam (lr 1e-3)
on synthetic data of Fashion-MNIST's shape (and the character-level GPT of bench/gpt_reference.py on windows of 64
random ids of 101), in fp32 and under autocast (bf16; fp16 with a GradScaler where the
device supports it), times warm-up + repeats x steps training steps, and times torch.matmul per dtype and shape.
Progress goes to stderr; the last stdout line is one JSON object with the fields `mixtape bench --json` prints.

On the CPU, PyTorch 1.13's autocast supports bfloat16 only: fp16 is reported as unsupported there. On a GPU
(PyTorch 2.x with CUDA) fp16 and bf16 run under torch.autocast, fp16 with a GradScaler, and the timed loops end
with torch.cuda.synchronize().

Usage: /usr/bin/python3 bench/torch_reference.py --threads 2 --models mlp --batches 128
(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS on some machines; `mixtape bench --vs-pytorch` unsets them.)
"""
import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--precisions", default="fp32,fp16,bf16")
    p.add_argument("--batches", default="32,128,512")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--gemm-shapes", default="128x1024x1024,1024x1024x1024,2048x2048x2048")
    p.add_argument("--gemm-seconds", type=float, default=0.3)
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--no-gemm", action="store_true")
    return p.parse_args()


def emit(result):
    print(json.dumps(result), flush=True)


def log(*parts):
    print("torch_reference:", *parts, file=sys.stderr, flush=True)


def make_model(torch, name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 10))
    if name == "cnn":
        return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                             nn.Conv2d(1, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "gpt":  # the GPT of `mixtape train --model gpt` at its defaults (bench/gpt_reference.py)
        from gpt_reference import GPT
        return GPT(GPT_VOCAB, GPT_CONTEXT, 128, 4, 4)
    raise SystemExit(f"unknown model '{name}': expected mlp, cnn or gpt")


# the gpt's bench input: windows of 64 character ids over the default corpus's 101 characters
GPT_VOCAB, GPT_CONTEXT = 101, 64


DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def autocast_support(torch, device, precision):
    """None when autocast to `precision` works on `device`, else the reason it does not."""
    if precision == "fp32":
        return None
    dtype = getattr(torch, DTYPES[precision])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autocast(device_type=device.type, dtype=dtype):
                enabled = torch.is_autocast_cpu_enabled() if device.type == "cpu" else torch.is_autocast_enabled()
        except RuntimeError as e:  # PyTorch 1.13 refuses a CPU autocast dtype other than bfloat16 on entry
            enabled, caught = False, caught + [warnings.WarningMessage(str(e), RuntimeWarning, "", 0)]
    if enabled:
        return None
    why = " ".join(str(caught[-1].message).split()) if caught else "autocast stays disabled"
    return f"PyTorch {torch.__version__} autocast on {device.type} does not support {precision} ({why})"


def cpu_capability(torch):
    """The SIMD level PyTorch's CPU kernels use (AVX2, AVX512, ...), where this PyTorch can say."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return torch._C._get_cpu_capability() if hasattr(torch._C, "_get_cpu_capability") else None


def sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(torch, model_name, precision, batch, device, a):
    unsupported = autocast_support(torch, device, precision)
    base = {"model": model_name, "precision": precision, "batch": batch}
    if unsupported:
        return dict(base, supported=False, reason=unsupported)
    F = torch.nn.functional
    torch.manual_seed(0)
    model = make_model(torch, model_name).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    use_amp = precision != "fp32"
    dtype = getattr(torch, DTYPES[precision])
    scaler = torch.cuda.amp.GradScaler(enabled=precision == "fp16" and device.type == "cuda")
    g = torch.Generator().manual_seed(1)
    if model_name == "gpt":  # a sample is a window of GPT_CONTEXT ids
        xs = [torch.randint(0, GPT_VOCAB, (batch, GPT_CONTEXT), generator=g).to(device) for _ in range(4)]
        ys = [torch.randint(0, GPT_VOCAB, (batch * GPT_CONTEXT,), generator=g).to(device) for _ in range(4)]
    else:
        xs = [torch.rand(batch, 784, generator=g).to(device) for _ in range(4)]
        ys = [torch.randint(0, 10, (batch,), generator=g).to(device) for _ in range(4)]
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    state = {"i": 0, "act": 0, "loss": None}

    def step():
        x, y = xs[state["i"] % 4], ys[state["i"] % 4]
        state["i"] += 1
        before = torch.cuda.memory_allocated(device) if cuda else 0
        with torch.autocast(device_type=device.type, dtype=dtype) if use_amp else contextlib.nullcontext():
            out = model(x)
            loss = F.cross_entropy(out.reshape(y.shape[0], -1).float() if model_name == "gpt" else out, y)
        if cuda:
            state["act"] = max(state["act"], torch.cuda.memory_allocated(device) - before)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        state["loss"] = loss

    for _ in range(a.warmup):
        step()
    if a.warmup:
        state["loss"].item()
    rates, cpu_rates = [], []
    for _ in range(a.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.steps):
            step()
        state["loss"].item()
        sync(torch, device)
        rates.append(batch * a.steps / (time.perf_counter() - t0))
        cpu_rates.append(batch * a.steps / max(time.process_time() - c0, 1e-9))
    sps = statistics.median(rates)
    return dict(base, supported=True, samples_per_s=sps, repeat_samples_per_s=rates, step_ms=1e3 * batch / sps,
                samples_per_cpu_s=statistics.median(cpu_rates),
                peak_mem_bytes=torch.cuda.max_memory_allocated(device) if cuda else None,
                activation_bytes=state["act"] if cuda else None, allocs_per_step=None,
                final_loss=state["loss"].item(), skipped_steps=None)


def bench_gemm(torch, shape, precision_dtype, device, a):
    m, n, k = (int(v) for v in shape.split("x"))
    dtype = getattr(torch, precision_dtype)
    name = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[precision_dtype]
    base = {"m": m, "n": n, "k": k, "dtype": name}
    x = torch.randn(m, k, device=device).to(dtype)
    y = torch.randn(k, n, device=device).to(dtype)
    try:
        torch.matmul(x, y)
    except RuntimeError as e:
        return dict(base, supported=False, reason=f"torch.matmul in {precision_dtype} on {device.type}: {e}")
    sync(torch, device)
    flop = 2.0 * m * n * k
    rates = []
    for _ in range(max(a.repeats, 1)):
        iters = 0
        t0 = time.perf_counter()
        while True:
            torch.matmul(x, y)
            iters += 1
            if iters % 8 == 0 or time.perf_counter() - t0 >= a.gemm_seconds:
                sync(torch, device)
                sec = time.perf_counter() - t0
                if sec >= a.gemm_seconds:
                    break
        rates.append(flop * iters / sec * 1e-9)
    return dict(base, supported=True, gflops=statistics.median(rates), repeat_gflops=rates)


def main():
    a = parse_args()
    try:
        import torch
    except ImportError as e:
        emit({"framework": "pytorch", "error": f"PyTorch is not installed for {sys.executable} ({e}); "
                                              "Debian: sudo apt-get install python3-torch"})
        return 3
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        emit({"framework": "pytorch", "version": torch.__version__,
              "error": f"PyTorch {torch.__version__} sees no CUDA device for --device {a.device}"})
        return 3
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    result = {"framework": "pytorch", "version": torch.__version__, "device": str(device),
              "threads": torch.get_num_threads(),
              "machine": {"cpu_capability": cpu_capability(torch)}
              if device.type == "cpu" else {"gpu": torch.cuda.get_device_name(device)},
              "config": {"warmup": a.warmup, "steps": a.steps, "repeats": a.repeats, "optimizer": "adam", "lr": 1e-3,
                         "data": "synthetic: (N, 784) uniform [0, 1) pixels, labels 0..9"},
              "train": [], "gemm": []}
    if not a.no_train:
        for model in a.models.split(","):
            for precision in a.precisions.split(","):
                for batch in (int(b) for b in a.batches.split(",")):
                    r = bench_train(torch, model, precision, batch, device, a)
                    log(model, precision, "batch", batch, ":",
                        f"{r['samples_per_s']:.0f} samples/s" if r["supported"] else "unsupported")
                    result["train"].append(r)
    if not a.no_gemm:
        for shape in a.gemm_shapes.split(","):
            for dt in ("float32", "float16", "bfloat16"):
                g = bench_gemm(torch, shape, dt, device, a)
                log("gemm", shape, dt, ":", f"{g['gflops']:.1f} GFLOP/s" if g["supported"] else "unsupported")
                result["gemm"].append(g)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
