#!/usr/bin/python3
"""Writes tests/data/optim_reference.json: optimizer trajectories, gradient clipping and LR schedules
computed by PyTorch, for tests/test_optim.cpp to compare with. The tests never run Python.

Run from anywhere (Debian's PyTorch 1.13: `apt-get install -y python3-torch libopenblas0-pthread`):

    /usr/bin/python3 tests/reference/optim_reference.py

Everything is deterministic: the initial parameters and gradients come from a NumPy RandomState with a
fixed seed (SEED below), generated in float64; the float32 runs use the same values rounded to float32.
Each optimizer case runs STEPS steps on two parameters (shapes SHAPES) and records the parameters and the
optimizer state after every step. Non-finite numbers are written as the strings "nan", "inf", "-inf"
(JSON has no literal for them).

ATen is pinned to its portable ("default") CPU kernels and to one thread, so the values do not depend on
the machine's vector units (with AVX2, PyTorch's vectorized add/addcmul use fused multiply-adds and the
last bit of float32 results would depend on the element's position in the tensor).
"""
import json
import math
import os
import pathlib
import subprocess
import sys

os.environ["ATEN_CPU_CAPABILITY"] = "default"  # must be set before torch is imported
os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

SEED = 20240611
STEPS = 5
SHAPES = [(3, 4), (5,)]
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / "optim_reference.json"

torch.set_num_threads(1)


def enc(x):
    """A float for JSON: finite values as numbers (repr round-trips exactly), others as strings."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def flat(t):
    return [enc(v) for v in t.detach().reshape(-1).tolist()]


def package_version(name):
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


rng = np.random.RandomState(SEED)
INITIAL = [rng.standard_normal(s) for s in SHAPES]
GRADS = [[rng.standard_normal(s) for s in SHAPES] for _ in range(STEPS)]
# A second, larger-scale gradient sequence (Adam is scale invariant, SGD is not).
GRADS_LARGE = [[3.0 * rng.standard_normal(s) for s in SHAPES] for _ in range(STEPS)]

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}

# name, optimizer kind, options (mixtape's option names), gradient set, steps where param 1 has no grad,
# optional LR schedule applied after each step.
OPTIMIZER_CASES = [
    ("sgd_plain", "sgd", dict(lr=0.1), GRADS, [], None),
    ("sgd_momentum_dampening_wd", "sgd", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01), GRADS, [],
     None),
    ("sgd_nesterov", "sgd", dict(lr=0.05, momentum=0.8, weight_decay=0.001, nesterov=True), GRADS_LARGE, [], None),
    ("sgd_momentum_skip", "sgd", dict(lr=0.1, momentum=0.9), GRADS, [0, 2], None),
    ("sgd_momentum_steplr", "sgd", dict(lr=0.2, momentum=0.5), GRADS, [],
     dict(kind="step_lr", step_size=2, gamma=0.1)),
    ("adam", "adam", dict(lr=1e-2), GRADS, [], None),
    ("adam_betas_eps", "adam", dict(lr=3e-2, beta1=0.8, beta2=0.99, eps=1e-6), GRADS_LARGE, [], None),
    ("adam_weight_decay", "adam", dict(lr=1e-2, weight_decay=0.1), GRADS, [], None),
    ("adam_skip", "adam", dict(lr=1e-2), GRADS, [1, 2], None),
    ("adamw", "adamw", dict(lr=1e-2), GRADS, [], None),
    ("adamw_strong_decay", "adamw", dict(lr=5e-2, weight_decay=0.5), GRADS_LARGE, [], None),
    ("adamw_skip_steplr", "adamw", dict(lr=1e-2, weight_decay=0.1), GRADS, [3],
     dict(kind="step_lr", step_size=3, gamma=0.5)),
]

STATE_NAMES = {"sgd": ["momentum_buffer"], "adam": ["exp_avg", "exp_avg_sq"], "adamw": ["exp_avg", "exp_avg_sq"]}


def make_optimizer(kind, params, o):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.0), dampening=o.get("dampening", 0.0),
                               weight_decay=o.get("weight_decay", 0.0), nesterov=o.get("nesterov", False),
                               foreach=False)
    betas = (o.get("beta1", 0.9), o.get("beta2", 0.999))
    if kind == "adam":
        return torch.optim.Adam(params, lr=o["lr"], betas=betas, eps=o.get("eps", 1e-8),
                                weight_decay=o.get("weight_decay", 0.0), foreach=False)
    return torch.optim.AdamW(params, lr=o["lr"], betas=betas, eps=o.get("eps", 1e-8),
                             weight_decay=o.get("weight_decay", 1e-2), foreach=False)


def run_optimizer_case(name, kind, options, grads, skip, schedule, dtype_name):
    dtype = TORCH_DTYPES[dtype_name]
    params = [torch.tensor(p, dtype=dtype, requires_grad=True) for p in INITIAL]
    opt = make_optimizer(kind, params, options)
    sched = None
    if schedule is not None:
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=schedule["step_size"], gamma=schedule["gamma"])
    case = dict(name=name, optimizer=kind, dtype=dtype_name, options=options, schedule=schedule,
                shapes=[list(s) for s in SHAPES], initial=[flat(p) for p in params], grads=[], lrs=[], params=[],
                state=[])
    for step in range(STEPS):
        step_grads = []
        for i, p in enumerate(params):
            if i == 1 and step in skip:
                p.grad = None
                step_grads.append(None)
            else:
                p.grad = torch.tensor(grads[step][i], dtype=dtype)
                step_grads.append(flat(p.grad))
        case["grads"].append(step_grads)
        case["lrs"].append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
        case["params"].append([flat(p) for p in params])
        state = {}
        for i, p in enumerate(params):
            st = opt.state.get(p, {})
            for key in STATE_NAMES[kind]:
                if st.get(key) is not None:
                    state[f"{i}.{key}"] = flat(st[key])
            if "step" in st:
                state[f"{i}.step"] = int(st["step"].item())
        case["state"].append(state)
    return case


# ---- gradient clipping ----
def clip_inputs():
    r = np.random.RandomState(SEED + 1)
    base = [r.standard_normal(s) for s in SHAPES]
    with_inf = [g.copy() for g in base]
    with_inf[1][2] = math.inf
    with_nan = [g.copy() for g in base]
    with_nan[0][1, 3] = math.nan
    return [
        ("l2_clipped", base, 1.0, 2.0),
        ("l2_not_clipped", base, 100.0, 2.0),
        ("inf_clipped", base, 0.5, math.inf),
        ("inf_not_clipped", base, 10.0, math.inf),
        ("l1_clipped", base, 2.0, 1.0),
        ("l3_clipped", base, 0.7, 3.0),
        ("l2_inf_grad", with_inf, 1.0, 2.0),
        ("l2_nan_grad", with_nan, 1.0, 2.0),
    ]


def run_clip_case(name, grads, max_norm, norm_type, dtype_name):
    dtype = TORCH_DTYPES[dtype_name]
    params = [torch.zeros(g.shape, dtype=dtype, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g, dtype=dtype)
    before = [flat(p.grad) for p in params]
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    return dict(name=name, dtype=dtype_name, max_norm=max_norm, norm_type=enc(norm_type),
                shapes=[list(g.shape) for g in grads], grads=before, total_norm=enc(total.item()),
                clipped=[flat(p.grad) for p in params])


# ---- LR schedules ----
def step_lr_sequence(base_lr, step_size, gamma, n):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])  # the lr the next optimizer step uses
        opt.step()
        sched.step()
    return lrs


def warmup_cosine(step, base_lr, warmup, total, min_lr):
    """mixtape's WarmupCosine (optim/lr_schedule.h), written independently here."""
    if step < warmup:
        return base_lr * step / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedules():
    out = []
    for base_lr, step_size, gamma, n in [(0.1, 3, 0.1, 12), (1.0, 1, 0.5, 8), (0.05, 4, 0.3, 17)]:
        out.append(dict(kind="step_lr", base_lr=base_lr, step_size=step_size, gamma=gamma,
                        lrs=step_lr_sequence(base_lr, step_size, gamma, n)))
    for base_lr, warmup, total, min_lr, n in [(0.1, 4, 12, 0.0, 15), (3e-4, 0, 10, 1e-5, 13), (1.0, 5, 5, 0.1, 8),
                                              (0.5, 3, 20, 0.01, 22)]:
        out.append(dict(kind="warmup_cosine", base_lr=base_lr, warmup_steps=warmup, total_steps=total, min_lr=min_lr,
                        lrs=[warmup_cosine(s, base_lr, warmup, total, min_lr) for s in range(n)]))
    return out


def main():
    data = dict(
        generator="tests/reference/optim_reference.py",
        torch_version=torch.__version__,
        debian_package="python3-torch " + package_version("python3-torch"),
        numpy_version=np.__version__,
        aten_cpu_capability=os.environ["ATEN_CPU_CAPABILITY"],
        seed=SEED,
        steps=STEPS,
        optimizers=[],
        clip=[],
        lr_schedules=schedules(),
    )
    for dtype_name in ("float64", "float32"):
        for name, kind, options, grads, skip, schedule in OPTIMIZER_CASES:
            data["optimizers"].append(run_optimizer_case(name, kind, options, grads, skip, schedule, dtype_name))
        for name, grads, max_norm, norm_type in clip_inputs():
            data["clip"].append(run_clip_case(name, grads, max_norm, norm_type, dtype_name))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One line per case keeps the file readable and its diffs small.
    lines = ["{"]
    items = list(data.items())
    for k, (key, value) in enumerate(items):
        sep = "," if k + 1 < len(items) else ""
        if isinstance(value, list):
            body = ",\n".join("  " + json.dumps(v, allow_nan=False) for v in value)
            lines.append(f" {json.dumps(key)}: [\n{body}\n ]{sep}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, allow_nan=False)}{sep}")
    lines.append("}")
    OUT.write_text("\n".join(lines) + "\n")
    json.loads(OUT.read_text())  # the file parses
    print(f"wrote {OUT} (torch {torch.__version__}, {len(data['optimizers'])} optimizer cases, "
          f"{len(data['clip'])} clip cases, {len(data['lr_schedules'])} schedules)", file=sys.stderr)


if __name__ == "__main__":
    main()
