#!/usr/bin/python3
"""Writes tests/data/grad_scaler_reference.json: loss-scale trajectories of PyTorch's GradScaler, for
tests/test_grad_scaler.cpp to compare mixtape's amp::GradScaler with. The tests never run Python.

Run from anywhere (Debian's PyTorch 1.13: `apt-get install -y python3-torch libopenblas0-pthread`):

    /usr/bin/python3 tests/reference/grad_scaler_reference.py

What runs, and what is substituted
----------------------------------
The script drives the real `torch.cuda.amp.GradScaler` Python class of the installed PyTorch: its
per-optimizer stage machine (READY -> UNSCALED -> STEPPED, reset by update()), `scale`, `unscale_`,
`_unscale_grads_` (grouping of gradients by device and dtype), `step` (skipping the optimizer step on
inf/NaN), `update`, `get_scale` and `state_dict`. The optimizer is the real `torch.optim.SGD`.

PyTorch 1.13 implements GradScaler's two kernels only for CUDA (there are no CPU kernels before 2.x), and
this machine has no GPU. So the script substitutes exactly these two operators with small Python functions
transcribed from ATen's aten/src/ATen/native/cuda/AmpKernels.cu (functions
`_amp_foreach_non_finite_check_and_unscale_cuda_` and `amp_update_scale_cuda_kernel`):

  * torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale): for every element,
    val = the element in its "opmath" type (float32 for float16/bfloat16/float32, float64 for float64);
    found_inf = 1.0 if val is not finite; the element becomes (inv_scale == 1 ? val : val * inv_scale)
    computed in the opmath type (inv_scale is float32), stored back in the gradient's dtype.
  * torch._amp_update_scale_(scale, growth_tracker, found_inf, growth_factor, backoff_factor,
    growth_interval): if found_inf: scale = float32(scale * backoff_factor) (the product in double, as the
    CUDA kernel multiplies a float by a double), growth_tracker = 0; else successful = growth_tracker + 1;
    if successful == growth_interval: new = float32(scale * growth_factor), scale = new if new is finite,
    growth_tracker = 0; else growth_tracker = successful.

The script first checks that both real operators indeed fail on CPU tensors (so nothing real is replaced).

Three more patches, each only lifting a "must be on a GPU" check and changing no arithmetic:
  * `amp_definitely_not_available` (imported into torch.cuda.amp.grad_scaler) returns False; otherwise
    GradScaler disables itself when CUDA is unavailable.
  * `_MultiDeviceReplicator` (torch.cuda.amp.grad_scaler) is replaced by a subclass whose constructor omits
    `assert master_tensor.is_cuda`; its `get` (copy per device) is inherited unchanged.
  * `GradScaler.scale` asserts `outputs.is_cuda`: the loss is passed as a `torch.Tensor` subclass whose
    `is_cuda` property answers True (a view of the same CPU tensor; backward flows through it as usual).

The model: parameters w (2, 3) and b (3,) (float32, or b float64 in one scenario); each micro-batch's loss
is sum(w * xw) + sum(b * xb) with inputs xw, xb drawn from a NumPy RandomState (fixed SEED), so the
gradients are scale * x exactly as PyTorch computes them; injected non-finite values (inf, -inf, NaN) or a
huge finite value (which overflows float32 only when multiplied by a large scale) make steps overflow.
Per step the JSON records the inputs, whether an inf/NaN was found, whether optimizer.step() ran, the
scale and growth tracker after update(), the parameters, their (unscaled) gradients and the SGD momentum
buffers. Non-finite numbers are written as the strings "nan", "inf", "-inf".

ATen is pinned to its portable ("default") CPU kernels and to one thread, like optim_reference.py.
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
import torch.cuda.amp.grad_scaler as grad_scaler_module  # noqa: E402

SEED = 20240612
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / "grad_scaler_reference.json"
SHAPES = {"w": (2, 3), "b": (3,)}

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------------
# The substitutes for the two CUDA-only operators (transcribed from ATen's AmpKernels.cu, see the docstring)
# ---------------------------------------------------------------------------------------------------------

def _opmath_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def amp_foreach_non_finite_check_and_unscale_(scaled_grads, found_inf, inv_scale):
    assert found_inf.numel() == 1 and found_inf.dtype == torch.float32
    assert inv_scale.numel() == 1 and inv_scale.dtype == torch.float32
    if len(scaled_grads) == 0:
        return
    for grad in scaled_grads:
        opmath = _opmath_dtype(grad.dtype)
        val = grad.to(opmath)
        if not bool(torch.isfinite(val).all()):
            found_inf.fill_(1.0)
        inv = inv_scale.to(opmath)
        if inv_scale.item() != 1.0:
            val = val * inv  # one IEEE multiplication in the opmath type
        grad.copy_(val)  # rounded once to the gradient's dtype


def amp_update_scale_(current_scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    assert current_scale.numel() == 1 and current_scale.dtype == torch.float32
    assert growth_tracker.numel() == 1 and growth_tracker.dtype == torch.int32
    assert found_inf.numel() == 1 and found_inf.dtype == torch.float32
    if found_inf.item():
        # float * double in double, stored into a float: fill_ rounds the double once to float32
        current_scale.fill_(current_scale.item() * backoff_factor)
        growth_tracker.fill_(0)
    else:
        successful = int(growth_tracker.item()) + 1
        if successful == growth_interval:
            new_scale = np.float32(current_scale.item() * growth_factor)
            if np.isfinite(new_scale):  # do not grow the scale past float32 bounds to inf
                current_scale.fill_(float(new_scale))
            growth_tracker.fill_(0)
        else:
            growth_tracker.fill_(successful)
    return current_scale


def _check_real_ops_missing_on_cpu():
    """The substitutes replace nothing that exists: both real operators reject CPU tensors in this build."""
    for call in (lambda: torch._amp_update_scale_(torch.ones(1), torch.zeros(1, dtype=torch.int32), torch.zeros(1),
                                                  2.0, 0.5, 3),
                 lambda: torch._amp_foreach_non_finite_check_and_unscale_([torch.ones(2)], torch.zeros(1),
                                                                          torch.ones(1))):
        try:
            call()
        except (NotImplementedError, RuntimeError):
            continue
        raise SystemExit("this PyTorch has CPU kernels for GradScaler: drop the substitutes and use the real ops")


class _CpuReplicator(grad_scaler_module._MultiDeviceReplicator):
    """_MultiDeviceReplicator without its `assert master_tensor.is_cuda`; get() is inherited unchanged."""

    def __init__(self, master_tensor):  # noqa: super().__init__ would assert
        self.master = master_tensor
        self._per_device_tensors = {}


class _LossOnCpu(torch.Tensor):
    """A CPU loss that passes GradScaler.scale's `assert outputs.is_cuda` (nothing else reads is_cuda)."""

    @property
    def is_cuda(self):
        return True


def install_patches():
    _check_real_ops_missing_on_cpu()
    torch._amp_foreach_non_finite_check_and_unscale_ = amp_foreach_non_finite_check_and_unscale_
    torch._amp_update_scale_ = amp_update_scale_
    grad_scaler_module.amp_definitely_not_available = lambda: False
    grad_scaler_module._MultiDeviceReplicator = _CpuReplicator


# ---------------------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------------------

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


HUGE = 2e34  # finite in float32; times 2^15 or more it overflows float32 (max ~3.4028e38), times 2^14 it does not


def draw(rng, name, kind, np_dtype):
    """Inputs of one parameter's term: standard normal, with one entry replaced according to `kind`."""
    x = rng.standard_normal(SHAPES[name]).astype(np_dtype).reshape(-1)
    special = {"clean": None, "inf": math.inf, "-inf": -math.inf, "nan": math.nan, "huge": HUGE}[kind]
    if special is not None:
        x[1 if name == "w" else 2] = special
    return x.reshape(SHAPES[name])


def mb(w="clean", b="clean"):
    """One micro-batch: the kind of input of each parameter's term (None: the parameter is not in this loss)."""
    return {"w": w, "b": b}


def step(*micro_batches, unscale=False):
    return {"micro_batches": list(micro_batches) or [mb()], "unscale": unscale}


def clean(n):
    return [step() for _ in range(n)]


def bad(kind, n=1, param="w"):
    return [step(mb(**{param: kind})) for _ in range(n)]


SCENARIOS = [
    dict(name="default_factors_interval3",
         options=dict(init_scale=65536.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=3),
         sgd=dict(lr=0.1, momentum=0.9), dtypes=dict(w="float32", b="float32"),
         steps=clean(3) + bad("inf") + clean(2) + bad("nan", 2, "b") + clean(3) + clean(3) + bad("-inf", 1, "b")
         + clean(3) + [step(unscale=True)] + bad("inf")),
    dict(name="backoff_to_tiny_scales",
         options=dict(init_scale=1.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=5),
         sgd=dict(lr=0.05, momentum=0.0), dtypes=dict(w="float32", b="float32"),
         steps=bad("nan", 24, "b") + clean(5) + clean(3) + bad("inf") + clean(6)),
    dict(name="custom_factors",
         options=dict(init_scale=1000.0, growth_factor=3.0, backoff_factor=0.3, growth_interval=2),
         sgd=dict(lr=0.1, momentum=0.5), dtypes=dict(w="float32", b="float32"),
         steps=clean(4) + bad("inf") + clean(1) + bad("nan") + clean(6) + bad("-inf", 1, "b") + clean(4)
         + bad("nan", 3, "b") + clean(3)),
    dict(name="overflow_by_scale",
         options=dict(init_scale=65536.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=4),
         sgd=dict(lr=1e-3, momentum=0.0), dtypes=dict(w="float32", b="float32"),
         steps=bad("huge", 3, "b") + clean(3) + bad("huge", 2, "b") + clean(4) + bad("huge", 1, "b") + clean(2)),
    dict(name="accumulation_and_explicit_unscale",
         options=dict(init_scale=4096.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2),
         sgd=dict(lr=0.1, momentum=0.9), dtypes=dict(w="float32", b="float32"),
         steps=[step(mb(), mb()), step(mb(), mb(), unscale=True), step(mb(), mb("inf", "clean")),
                step(mb(), mb(None, "clean"), mb("clean", None)), step(mb(), mb(), unscale=True),
                step(mb(None, "nan"), mb("clean", None), unscale=True), step(mb(), mb(), mb()),
                step(mb(), mb()), step(mb("clean", None)), step(mb(), mb("clean", "-inf"))]),
    dict(name="mixed_dtypes_float32_float64",
         options=dict(init_scale=3072.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=3),
         sgd=dict(lr=0.1, momentum=0.9), dtypes=dict(w="float32", b="float64"),
         steps=[step(mb("clean", None), mb(None, "clean")) for _ in range(3)]
         + [step(mb("clean", None), mb(None, "nan"))]
         + [step(mb("clean", None), mb(None, "clean"), unscale=True) for _ in range(3)]
         + [step(mb("inf", None), mb(None, "clean"))]
         + [step(mb("clean", None), mb(None, "clean")) for _ in range(4)]),
    dict(name="growth_every_step",
         options=dict(init_scale=1.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=1),
         sgd=dict(lr=0.01, momentum=0.0), dtypes=dict(w="float32", b="float32"),
         steps=clean(10) + bad("inf") + clean(5) + bad("nan", 2) + clean(3)),
]

# State-machine call sequences: "sb" = scale a clean loss and backpropagate it, "sb_inf" = the same with an inf
# input, "unscale" = unscale_(opt), "step" = step(opt), "update" = update(), "zero_grad" = zero_grad(set_to_none).
STATE_MACHINE = [
    ("unscale_twice", ["sb", "unscale", "unscale"]),
    ("unscale_after_step", ["sb", "step", "unscale"]),
    ("step_twice", ["sb", "step", "step"]),
    ("update_without_inf_check", ["sb", "update"]),
    ("update_after_unscale_without_step", ["sb", "unscale", "update"]),
    ("update_twice", ["sb", "step", "update", "update"]),
    ("step_without_gradients", ["sb", "zero_grad", "step", "update"]),
    ("two_iterations", ["sb", "unscale", "step", "update", "zero_grad", "sb", "step", "update"]),
    ("overflow_unscale_update_then_clean", ["sb_inf", "unscale", "update", "zero_grad", "sb", "step", "update"]),
]
STATE_MACHINE_OPTIONS = dict(init_scale=65536.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=1)


def make_model(rng, dtypes):
    params = {}
    for name in ("w", "b"):
        np_dtype = np.float64 if dtypes[name] == "float64" else np.float32
        torch_dtype = torch.float64 if dtypes[name] == "float64" else torch.float32
        params[name] = torch.tensor(rng.standard_normal(SHAPES[name]).astype(np_dtype), dtype=torch_dtype,
                                    requires_grad=True)
    return params


def counted_sgd(params, sgd):
    opt = torch.optim.SGD([params["w"], params["b"]], lr=sgd["lr"], momentum=sgd["momentum"], foreach=False)
    real_step = opt.step
    opt.calls = 0

    def counting_step(*args, **kwargs):
        opt.calls += 1
        return real_step(*args, **kwargs)

    opt.step = counting_step  # GradScaler calls optimizer.step(): count whether it did
    return opt


def backward_micro_batch(scaler, params, inputs):
    """loss = sum over the parameters present of sum(p * x); scaler.scale(loss).backward()."""
    loss = None
    for name, x in inputs.items():
        if x is None:
            continue
        term = (params[name] * torch.tensor(x, dtype=params[name].dtype)).sum()
        loss = term if loss is None else loss + term
    scaler.scale(loss.as_subclass(_LossOnCpu)).backward()


def run_scenario(sc, rng):
    dtypes = sc["dtypes"]
    params = make_model(rng, dtypes)
    opt = counted_sgd(params, sc["sgd"])
    scaler = torch.cuda.amp.GradScaler(**sc["options"])
    assert scaler.is_enabled()
    out = dict(name=sc["name"], options=sc["options"], sgd=sc["sgd"], dtypes=dtypes,
               shapes={k: list(v) for k, v in SHAPES.items()},
               initial={k: flat(p) for k, p in params.items()}, steps=[])
    for spec in sc["steps"]:
        opt.zero_grad(set_to_none=True)  # mixtape's zero_grad leaves no gradient at all
        record = dict(micro_batches=[], unscale=spec["unscale"])
        for m in spec["micro_batches"]:
            inputs = {}
            for name in ("w", "b"):
                kind = m[name]
                inputs[name] = None if kind is None else draw(rng, name, kind,
                                                              np.float64 if dtypes[name] == "float64" else np.float32)
            record["micro_batches"].append({k: (None if v is None else [enc(e) for e in v.reshape(-1)])
                                            for k, v in inputs.items()})
            backward_micro_batch(scaler, params, inputs)
        if spec["unscale"]:
            scaler.unscale_(opt)
        calls_before = opt.calls
        scaler.step(opt)
        found = scaler._found_inf_per_device(opt)
        record["found_inf"] = bool(sum(v.item() for v in found.values()))
        record["stepped"] = opt.calls > calls_before
        scaler.update()
        record["scale"] = scaler.get_scale()
        record["growth_tracker"] = scaler._get_growth_tracker()
        record["params"] = {k: flat(p) for k, p in params.items()}
        record["grads"] = {k: (None if p.grad is None else flat(p.grad)) for k, p in params.items()}
        record["momentum_buffer"] = {}
        for k, p in params.items():
            buf = opt.state.get(p, {}).get("momentum_buffer")
            record["momentum_buffer"][k] = None if buf is None else flat(buf)
        out["steps"].append(record)
    out["final_state_dict"] = scaler.state_dict()
    return out


def run_state_machine(name, calls, rng):
    params = make_model(rng, dict(w="float32", b="float32"))
    opt = counted_sgd(params, dict(lr=0.1, momentum=0.0))
    scaler = torch.cuda.amp.GradScaler(**STATE_MACHINE_OPTIONS)
    out = dict(name=name, options=STATE_MACHINE_OPTIONS, initial={k: flat(p) for k, p in params.items()}, calls=[])
    for call in calls:
        entry = dict(call=call)
        try:
            if call in ("sb", "sb_inf"):
                inputs = {n: draw(rng, n, "inf" if (call == "sb_inf" and n == "w") else "clean", np.float32)
                          for n in ("w", "b")}
                entry["inputs"] = {k: [enc(e) for e in v.reshape(-1)] for k, v in inputs.items()}
                backward_micro_batch(scaler, params, inputs)
            elif call == "unscale":
                scaler.unscale_(opt)
            elif call == "step":
                scaler.step(opt)
            elif call == "update":
                scaler.update()
            elif call == "zero_grad":
                opt.zero_grad(set_to_none=True)
            else:
                raise ValueError(call)
            entry["raised"] = False
        except (RuntimeError, AssertionError) as e:
            entry["raised"] = True
            entry["error"] = f"{type(e).__name__}: {e}"
        entry["scale"] = scaler.get_scale()
        entry["growth_tracker"] = scaler._get_growth_tracker()
        entry["optimizer_steps"] = opt.calls
        out["calls"].append(entry)
    out["params"] = {k: flat(p) for k, p in params.items()}
    return out


def package_version(name):
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    install_patches()
    rng = np.random.RandomState(SEED)
    data = dict(
        generator="tests/reference/grad_scaler_reference.py",
        torch_version=torch.__version__,
        debian_package="python3-torch " + package_version("python3-torch"),
        numpy_version=np.__version__,
        aten_cpu_capability=os.environ["ATEN_CPU_CAPABILITY"],
        seed=SEED,
        substituted_ops=(
            "PyTorch 1.13 has no CPU kernels for torch._amp_foreach_non_finite_check_and_unscale_ and "
            "torch._amp_update_scale_; both were replaced by Python transcriptions of ATen's CUDA kernels "
            "(aten/src/ATen/native/cuda/AmpKernels.cu). Everything else is the real torch.cuda.amp.GradScaler "
            "and torch.optim.SGD; the only other patches lift its is_cuda checks (see the script's docstring)."),
        scenarios=[run_scenario(sc, rng) for sc in SCENARIOS],
        state_machine=[run_state_machine(name, calls, rng) for name, calls in STATE_MACHINE],
    )
    for sc in data["scenarios"]:
        assert max(s["scale"] for s in sc["steps"]) < 2.0 ** 24, f"{sc['name']}: keep PyTorch scenarios below 2^24"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One line per scenario step keeps the file readable and its diffs small.
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
    print(f"wrote {OUT} (torch {torch.__version__}, {len(data['scenarios'])} scenarios, "
          f"{sum(len(s['steps']) for s in data['scenarios'])} steps, {len(data['state_machine'])} state-machine "
          "sequences)", file=sys.stderr)


if __name__ == "__main__":
    main()
