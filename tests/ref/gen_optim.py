#!/usr/bin/python3
"""Reference fixtures for tests/test_optim.c and tests/test_checkpoint.c.

Run with Debian's python3-torch:  /usr/bin/python3 tests/ref/gen_optim.py
(with the `safetensors` package importable, it also writes torch_written.safetensors).

Writes, next to this script:
  optim.bin                 (format: tests/ref/fixture.py) every optimizer case
                            stepped by torch.optim: initial parameters, the gradient of
                            every step, the parameters after every step, the lr each
                            step used, the pre-clip norm (clipping cases) and the final
                            optimizer state.
  torch_written.safetensors one tensor of every dtype ember supports, plus a 0-d and
                            an empty one, written by safetensors.torch.save_file; the
                            values follow pattern() below (and test_checkpoint.c).

Records of optim.bin. Doubles are stored as i64 holding their IEEE bits (the fixture
format has no f64); "f64" below means that.
  cases/count  i64[1]: number of cases (test_optim.c lists the same names)
  C/config     f64[19]: kind (0 sgd, 1 adagrad, 2 adam, 3 adamw), lr, weight_decay,
               momentum, dampening, nesterov, lr_decay, initial_accumulator_value,
               beta1, beta2, eps, amsgrad, schedule kind (0 constant, 1 linear,
               2 cosine), base_lr, warmup_steps, total_steps, min_lr,
               clip max_norm (0 = no clipping), clip norm_type (2 or inf)
  C/steps      i64[1]
  C/p{j}/init, C/g{k}/p{j} (gradient of step k, before clipping),
  C/p{j}/step{k} (parameter after step k): f32, shaped like parameter j
  C/lr         f64[steps]: the lr torch used at each step
  C/norm       f64[steps]: total norm returned by clip_grad_norm_ (clipping cases)
  C/state/p{j}.{buffer}  f32: final state (torch's state_dict buffer names)
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = [(3, 4), (5,), ()]  # a matrix, a vector and a 0-d parameter

KINDS = {"sgd": 0, "adagrad": 1, "adam": 2, "adamw": 3}
SCHED = {"constant": 0, "linear": 1, "cosine": 2}


def case(name, kind, lr, steps=5, wd=0.0, momentum=0.0, dampening=0.0, nesterov=False,
         lr_decay=0.0, init_acc=0.0, betas=(0.9, 0.999), eps=None, amsgrad=False,
         sched="constant", warmup=0, total=0, min_lr=0.0, torch_sched=None, clip=0.0,
         norm_type=2.0):
    if eps is None:
        eps = 1e-10 if kind == "adagrad" else 1e-8
    return dict(name=name, kind=kind, lr=lr, steps=steps, wd=wd, momentum=momentum,
                dampening=dampening, nesterov=nesterov, lr_decay=lr_decay, init_acc=init_acc,
                betas=betas, eps=eps, amsgrad=amsgrad, sched=sched, warmup=warmup, total=total,
                min_lr=min_lr, torch_sched=torch_sched, clip=clip, norm_type=norm_type)


def hf_linear(warmup, total, base, min_lr):
    """transformers.get_linear_schedule_with_warmup, generalised to a floor min_lr."""
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return (min_lr + (base - min_lr) * (1.0 - p)) / base
    return f


def hf_cosine(warmup, total, base, min_lr):
    """transformers.get_cosine_schedule_with_warmup (num_cycles 0.5) with a floor min_lr."""
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return (min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))) / base
    return f


CASES = [
    case("sgd", "sgd", 0.1),
    case("sgd_wd", "sgd", 0.1, wd=0.05),
    case("sgd_momentum", "sgd", 0.05, momentum=0.9),
    case("sgd_momentum_dampening_wd", "sgd", 0.05, momentum=0.8, dampening=0.3, wd=0.01),
    case("sgd_nesterov", "sgd", 0.05, momentum=0.9, nesterov=True, wd=0.01),
    case("adagrad", "adagrad", 0.1),
    case("adagrad_wd_decay_init", "adagrad", 0.1, wd=0.02, lr_decay=0.05, init_acc=0.1, eps=1e-6),
    case("adam", "adam", 0.01),
    case("adam_wd", "adam", 0.01, wd=0.05, betas=(0.8, 0.99)),
    case("adam_amsgrad", "adam", 0.01, amsgrad=True),
    case("adamw", "adamw", 0.01, wd=0.1),
    case("adamw_amsgrad", "adamw", 0.02, wd=0.05, amsgrad=True, eps=1e-6),
    case("adam_clip", "adam", 0.01, clip=0.5),
    case("sgd_momentum_clip_inf", "sgd", 0.1, momentum=0.9, clip=0.3, norm_type=math.inf),
    case("adam_clip_noop", "adam", 0.01, clip=100.0),
    case("adamw_linear_warmup", "adamw", 0.01, steps=7, wd=0.01, sched="linear", warmup=2,
         total=5, torch_sched="lambda"),
    case("sgd_cosine_warmup_min", "sgd", 0.1, steps=7, momentum=0.9, sched="cosine", warmup=2,
         total=6, min_lr=0.01, torch_sched="lambda"),
    case("adam_cosine_annealing", "adam", 0.01, steps=6, sched="cosine", warmup=0, total=5,
         min_lr=0.001, torch_sched="annealing"),
]


def make_optimizer(c, params):
    k = c["kind"]
    if k == "sgd":
        return torch.optim.SGD(params, lr=c["lr"], momentum=c["momentum"],
                               dampening=c["dampening"], nesterov=c["nesterov"],
                               weight_decay=c["wd"], foreach=False)
    if k == "adagrad":
        return torch.optim.Adagrad(params, lr=c["lr"], lr_decay=c["lr_decay"],
                                   weight_decay=c["wd"],
                                   initial_accumulator_value=c["init_acc"], eps=c["eps"],
                                   foreach=False)
    cls = torch.optim.Adam if k == "adam" else torch.optim.AdamW
    return cls(params, lr=c["lr"], betas=c["betas"], eps=c["eps"], weight_decay=c["wd"],
               amsgrad=c["amsgrad"], foreach=False)


def make_scheduler(c, opt):
    if c["torch_sched"] == "lambda":
        fn = hf_linear if c["sched"] == "linear" else hf_cosine
        return torch.optim.lr_scheduler.LambdaLR(
            opt, fn(c["warmup"], c["total"], c["lr"], c["min_lr"]))
    if c["torch_sched"] == "annealing":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c["total"],
                                                          eta_min=c["min_lr"])
    return None


def f64(values):
    """Doubles as an i64 tensor of their bits (the fixture format has no f64)."""
    return torch.tensor(values, dtype=torch.float64).view(torch.int64)


def run_case(items, idx, c):
    name = c["name"]
    g = torch.Generator().manual_seed(1000 + idx)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]
    for j, p in enumerate(params):
        items.append((f"{name}/p{j}/init", p.detach().clone()))
    opt = make_optimizer(c, params)
    sched = make_scheduler(c, opt)
    b1, b2 = c["betas"]
    items.append((f"{name}/config", f64([
        KINDS[c["kind"]], c["lr"], c["wd"], c["momentum"], c["dampening"], float(c["nesterov"]),
        c["lr_decay"], c["init_acc"], b1, b2, c["eps"], float(c["amsgrad"]), SCHED[c["sched"]],
        c["lr"], c["warmup"], c["total"], c["min_lr"], c["clip"], c["norm_type"]])))
    items.append((f"{name}/steps", torch.tensor([c["steps"]], dtype=torch.int64)))
    lrs, norms = [], []
    for k in range(c["steps"]):
        for j, p in enumerate(params):
            grad = torch.randn(SHAPES[j], generator=g) * 0.5
            items.append((f"{name}/g{k}/p{j}", grad))
            p.grad = grad.clone()
        if c["clip"] > 0:
            n = torch.nn.utils.clip_grad_norm_(params, c["clip"], norm_type=c["norm_type"])
            norms.append(float(n))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
        for j, p in enumerate(params):
            items.append((f"{name}/p{j}/step{k}", p.detach().clone()))  # now: p changes later
    items.append((f"{name}/lr", f64(lrs)))
    if norms:
        items.append((f"{name}/norm", f64(norms)))
    for j, p in enumerate(params):
        for key, v in opt.state[p].items():
            if key == "step" or v is None:
                continue
            items.append((f"{name}/state/p{j}.{key}", v.detach().clone()))


def pattern(dtype, n):
    """The values of tensor i of a pattern tensor: the same rule in test_checkpoint.c."""
    idx = torch.arange(n, dtype=torch.int64)
    if dtype in (torch.float32, torch.float16, torch.bfloat16):
        return ((idx % 11 - 5).to(torch.float32) * 0.5).to(dtype)
    if dtype == torch.uint8:
        return (idx * 37 % 256).to(torch.uint8)
    if dtype == torch.int8:
        return (idx * 37 % 256 - 128).to(torch.int8)
    if dtype == torch.int32:
        return (idx * 1000003 - 7).to(torch.int32)
    return idx * 1000000007 - 5000000000  # int64, beyond 32 bits


def write_torch_safetensors(path):
    try:
        from safetensors.torch import save_file
    except ImportError:
        print("safetensors not importable: torch_written.safetensors not written", file=sys.stderr)
        return
    dts = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
           "i8": torch.int8, "u8": torch.uint8, "i32": torch.int32, "i64": torch.int64}
    shapes = {"f32": (2, 3), "f16": (4,), "bf16": (3, 2), "i8": (5,), "u8": (2, 2, 2),
              "i32": (3,), "i64": (2, 2)}
    ts = {}
    for k, dt in dts.items():
        n = math.prod(shapes[k])
        ts[k] = pattern(dt, n).reshape(shapes[k])
    ts["scalar_f32"] = pattern(torch.float32, 1).reshape(())
    ts["empty_i64"] = torch.zeros((0, 3), dtype=torch.int64)
    save_file(ts, path, metadata={"format": "pt", "writer": "gen_optim.py"})


def main():
    torch.set_num_threads(1)
    items = [("cases/count", torch.tensor([len(CASES)], dtype=torch.int64))]
    for i, c in enumerate(CASES):
        run_case(items, i, c)
    fixture.write(os.path.join(HERE, "optim.bin"), items)
    write_torch_safetensors(os.path.join(HERE, "torch_written.safetensors"))
    print(f"torch {torch.__version__}: {len(CASES)} optimizer cases")


if __name__ == "__main__":
    main()
