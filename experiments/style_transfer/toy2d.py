"""torchcfm's 2-D tasks: I-CFM / OT-CFM / SB-CFM in jaxdiff and in torchcfm (issue 15, section 4).

Tasks (Tong et al. 2023, "Improving and Generalizing Flow-Based Generative Models with
Minibatch Optimal Transport", sec. 5.1; torchcfm's tutorials): ``8gaussians -> moons`` and
``N(0, I) -> 8gaussians``; the data are ``benchmarks.flow_train.toy_pools`` (torchcfm's
8-gaussians and scikit-learn's moons), one fixed pool of ``steps`` batches per task and
seed, the same batches for both libraries. Network: torchcfm's ``MLP(dim=2,
time_varying=True, w=64)`` and its Flax twin; Adam, lr 1e-3, batch 256, ``steps`` steps
(20,000 as in the paper). Methods: I-CFM and exact OT-CFM at ``sigma = 0.1``, SB-CFM at
``sigma = 1`` on entropic pairs with ``epsilon = 2 sigma^2`` (torchcfm's
``ot_method="sinkhorn"``; its ``reg`` is the same absolute ``2 sigma^2``).

Evaluation, identical for both libraries: the torchcfm models are copied into the Flax twin
(time flipped: torchcfm's ``t = 0`` is the source, jaxdiff's ``t = 1``) and every model is
integrated by :class:`jaxdiff.flows.FlowODE` from ``n_eval`` fresh source points:

* ``W2``: exact 2-Wasserstein distance (POT's ``emd2``, squared Euclidean cost) between
  the generated points (RK4, 100 steps) and ``n_eval`` fresh target points.
* ``NPE``: normalised path energy ``|E int_0^1 |v(x_t)|^2 dt - W2^2(p_src, p_tgt)| /
  W2^2(p_src, p_tgt)`` (the paper's Table 2 metric), the energy summed along Euler
  trajectories of 200 steps (``sum |dx|^2 / |h|``), ``W2^2(p_src, p_tgt)`` between the
  source and target samples.
* ``W2`` after 2, 5 and 10 Euler steps: how straight the learnt flow is in use.

``python experiments/style_transfer/toy2d.py [--steps 20000] [--seeds 0 1] [--tasks ...]
[--methods ...] [--libraries jaxdiff torchcfm] [--out DIR] [--plot]`` writes
``toy2d_<task>.json`` (one row per method, library and seed, resumable) and, with
``--plot``, ``toy2d_<task>.png`` (trajectories of the first seed's models).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.flow_train import TorchcfmMLP, toy_pools
from jaxdiff._atomic import atomic_write_text
from jaxdiff.flows import FlowODE, cfm_objective, ot_cfm_objective, sb_cfm_objective
from jaxdiff.nets import bind
from jaxdiff.samplers import sample
from jaxdiff.schedules.flow import FlowSchedule
from jaxdiff.train import TrainingConfig, TrainState, make_optimizer, train_step

TASKS = ("8gaussians-moons", "normal-8gaussians")
METHODS = {"I-CFM": 0.1, "OT-CFM": 0.1, "SB-CFM": 1.0}  # sigma of each method
EULER_NFE = (2, 5, 10)
CHUNK = 500  # training steps per jitted scan


def task_pools(task: str, num: int, batch: int, seed: int):
    """``(source, target)`` ``[num, batch, 2]`` float32 for one task and seed."""
    gauss8, moons = toy_pools(num, batch, seed)
    if task == "8gaussians-moons":
        return gauss8, moons
    normal = np.random.default_rng(seed + 10_000).standard_normal(gauss8.shape)
    return normal.astype(np.float32), gauss8


def jax_objective(method: str):
    """The jaxdiff objective of a method name at its sigma."""
    make = {"I-CFM": cfm_objective, "OT-CFM": ot_cfm_objective, "SB-CFM": sb_cfm_objective}
    return make[method](METHODS[method])


def train_jaxdiff(method, src, tgt, seed):
    """``(params, pairs converged share)`` after ``len(src)`` steps (data ``x``, source ``x1``)."""
    module = TorchcfmMLP()
    apply_fn = bind(module).apply_fn
    num = src.shape[0]
    cfg = TrainingConfig(
        batch_size=src.shape[1], learning_rate=1e-3, gradient_clip_norm=None,
        num_steps=num, min_lr_ratio=1.0, warmup_steps=0,
    )  # fmt: skip
    tx = make_optimizer(cfg, num)
    params = module.init(jax.random.key(seed), jnp.zeros((1, 2)), jnp.zeros((1,)))["params"]
    fn = functools.partial(
        train_step, apply_fn=apply_fn, objective=jax_objective(method), tx=tx, config=cfg
    )
    run = jax.jit(lambda st, xs: jax.lax.scan(fn, st, xs))
    state = TrainState.create(jax.random.key(seed + 1), params, tx)
    converged = []
    for start in range(0, num, CHUNK):
        xs = {
            "x": jnp.asarray(tgt[start : start + CHUNK]),
            "x1": jnp.asarray(src[start : start + CHUNK]),
        }
        state, metrics = run(state, xs)
        converged.append(np.asarray(metrics["pairs_converged"]))
    return state.params, float(np.mean(np.concatenate(converged)))


def train_torchcfm(method, src, tgt, seed):
    """The torchcfm MLP trained by its matcher, as the Flax twin's ``(params, None)``."""
    import torch
    import torchcfm
    from torchcfm.models.models import MLP

    torch.set_num_threads(1)  # 8.5k parameters: more threads only contend
    torch.manual_seed(seed)
    np.random.seed(seed)  # torchcfm's plan sampler draws from NumPy's global generator
    sigma = METHODS[method]
    matcher = {
        "I-CFM": lambda: torchcfm.ConditionalFlowMatcher(sigma=sigma),
        "OT-CFM": lambda: torchcfm.ExactOptimalTransportConditionalFlowMatcher(sigma=sigma),
        "SB-CFM": lambda: torchcfm.SchrodingerBridgeConditionalFlowMatcher(
            sigma=sigma, ot_method="sinkhorn"
        ),
    }[method]()
    model = MLP(dim=2, time_varying=True, w=64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x0s, x1s = torch.from_numpy(src), torch.from_numpy(tgt)
    for s in range(src.shape[0]):
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0s[s], x1s[s])
        loss = torch.mean((model(torch.cat([xt, t[:, None]], dim=-1)) - ut) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    names = ["dense_0", "dense_1", "dense_2", "out"]
    return {
        name: {
            "kernel": jnp.asarray(lin.weight.detach().numpy().T),
            "bias": jnp.asarray(lin.bias.detach().numpy()),
        }
        for name, lin in zip(names, linears, strict=True)
    }, None


class _Velocity:
    """``model_fn(x, t, context)`` of the twin MLP.

    ``flip``: a torchcfm model, told ``1 - t`` and negated (both libraries in jaxdiff's time).
    """

    def __init__(self, params, flip: bool):
        self.apply = bind(TorchcfmMLP()).apply_fn
        self.params, self.flip = params, flip

    def __call__(self, x, t, context=None):
        if self.flip:
            return -self.apply(self.params, x, 1.0 - t, None)
        return self.apply(self.params, x, t, None)


def w2(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W2 between two equal-weight point sets (POT ``emd2``, squared Euclidean)."""
    import ot

    cost = ot.dist(a.astype(np.float64), b.astype(np.float64))
    return float(
        np.sqrt(
            ot.emd2(
                np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost, numItermax=10**7
            )
        )
    )


def evaluate(params, flip: bool, task: str, n_eval: int, seed: int) -> dict:
    """W2 (RK4 100; Euler 2/5/10) and normalised path energy of one trained model."""
    src, tgt = (a.reshape(-1, 2) for a in task_pools(task, 1, n_eval, seed + 777))
    model = _Velocity(params, flip)
    schedule = FlowSchedule.create(num_train_timesteps=1)
    key = jax.random.key(0)

    def gen(method, trajectory=False):
        out = sample(key, method, schedule, model, jnp.asarray(src), return_trajectory=trajectory)
        return out

    out = {"W2_rk4_100": w2(np.asarray(gen(FlowODE(solver="rk4", num_steps=100)).samples), tgt)}
    for n in EULER_NFE:
        out[f"W2_euler_{n}"] = w2(
            np.asarray(gen(FlowODE(solver="euler", num_steps=n)).samples), tgt
        )
    steps = 200
    traj = np.asarray(gen(FlowODE(solver="euler", num_steps=steps), trajectory=True).trajectory)
    path = np.concatenate([src[None], traj], 0)  # [steps + 1, n, 2], t from 1 to 0
    energy = float(np.mean(np.sum(np.diff(path, axis=0) ** 2, axis=(0, 2))) * steps)
    base = w2(src, tgt) ** 2
    out.update(path_energy=energy, W2sq_source_target=base, NPE=abs(energy - base) / base)
    return out


def plot(panels, task: str, path: Path):
    """Trajectories (Euler 100 steps) of the first seed's models, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(panels), 2)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    schedule = FlowSchedule.create(num_train_timesteps=1)
    for ax, (title, params, flip) in zip(axes.ravel(), panels, strict=False):
        src = task_pools(task, 1, 512, 999)[0].reshape(-1, 2)
        traj = np.asarray(
            sample(jax.random.key(0), FlowODE(solver="euler", num_steps=100), schedule,
                   _Velocity(params, flip), jnp.asarray(src), return_trajectory=True).trajectory
        )  # fmt: skip
        for k in range(0, src.shape[0], 2):
            ax.plot(traj[:, k, 0], traj[:, k, 1], color="olive", alpha=0.15, lw=0.5)
        ax.scatter(src[:, 0], src[:, 1], s=2, c="black")
        ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=2, c="tab:blue")
        ax.set_title(f"{task}: {title}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--libraries", nargs="+", default=["jaxdiff", "torchcfm"])
    parser.add_argument("--n-eval", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("experiments/style_transfer"))
    parser.add_argument("--plot", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        run_task(task, args)
    return 0


def run_task(task: str, args) -> None:
    """Train and score every (seed, method, library) of one task.

    Rows already in ``toy2d_<task>.json`` (same steps) are kept, not redone; the file is
    rewritten after each row.
    """
    metrics_path = args.out / f"toy2d_{task}.json"
    rows = json.loads(metrics_path.read_text())["rows"] if metrics_path.exists() else []
    done = {(r["method"], r["library"], r["seed"], r["steps"]) for r in rows}
    figure = []
    for seed in args.seeds:
        src, tgt = task_pools(task, args.steps, args.batch, seed)
        for method in args.methods:
            for library in args.libraries:
                if (method, library, seed, args.steps) in done:
                    continue
                train = train_jaxdiff if library == "jaxdiff" else train_torchcfm
                start = time.perf_counter()
                params, converged = train(method, src, tgt, seed)
                row = dict(task=task, method=method, library=library, seed=seed)
                row.update(steps=args.steps, batch=args.batch, sigma=METHODS[method])
                row.update(train_s=time.perf_counter() - start, pairs_converged=converged)
                row.update(evaluate(params, library == "torchcfm", task, args.n_eval, seed))
                rows.append(row)
                print(json.dumps(row), flush=True)
                text = json.dumps({"rows": rows}, indent=1)
                atomic_write_text(metrics_path, text)
                if seed == args.seeds[0]:
                    figure.append((f"{method} ({library})", params, library == "torchcfm"))
    if args.plot and figure:
        plot(figure, task, args.out / f"toy2d_{task}.png")


if __name__ == "__main__":
    raise SystemExit(main())
