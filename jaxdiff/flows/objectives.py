"""Conditional flow-matching objectives: CFM, OT-CFM, SB-CFM and stochastic interpolants.

Every objective is a :class:`CFMObjective` -- a :class:`~jaxdiff.flows.paths.ProbabilityPath`,
a coupling of the batch, a time sampler and the conditioning options -- in the training
engine's contract ``(key, params, apply_fn, batch) -> (loss, aux)``
(:mod:`jaxdiff.train.objectives`), so :func:`jaxdiff.train.fit` trains it. Time runs as in
jaxdiff: ``t = 0`` data, ``t = 1`` source; the model is told ``t * time_scale``.

Batch entries (leading size ``B``): ``"x"`` data ``x0`` ``[B, ...]``; ``"x1"`` source rows
(default ``N(0, I)`` noise, drawn per example); ``"labels"`` int class ids ``[B]`` of the
``x`` rows, in ``[0, num_classes)`` (needed by ``num_classes`` and class-conditional
pairing); ``"labels1"`` class ids of the ``x1`` rows (default ``"labels"``: noise row ``k``
joins class ``labels[k]``, a random split of the noise with the batch's label counts);
``"context"`` other conditioning, passed on as it is (not with ``num_classes``).

One step. Example ``k``'s key splits as in ``FlowMatchingObjective``, ``(k_t, k_1)``
(``z`` from ``fold_in(k_1, 1)``, label dropout from ``fold_in(k_t, 1)``), so
``cfm_objective()`` draws exactly what ``FlowMatchingObjective.create()`` draws.

1. **Coupling** (:meth:`CFMObjective.couple`): ``"independent"`` keeps the rows (I-CFM);
   ``"exact"`` permutes the ``x1`` rows by the minibatch OT assignment of the cost
   ``|x0_i - x1_j|^2`` (OT-CFM, Tong et al. 2023; shortest augmenting paths or an
   auction, on device, inside ``jit``: :func:`jaxdiff.ot.ot_pairs`); ``"sinkhorn"`` draws
   ``B`` index pairs with replacement from the entropic plan (SB-CFM).
   ``class_conditional`` pairs within equal labels only (torchcfm#117: global pairing can
   hurt conditional generation). Pairs are formed within the batch the objective sees
   (under micro-batching: each micro-batch); the Sinkhorn
   draw uses ``fold_in(key_0, 2)``.
2. ``t`` from the :class:`TimeSampler`; ``x_t, z = path.sample_xt``.
3. Label dropout for classifier-free guidance (Ho & Salimans 2021): with ``num_classes``
   set, the model's context is the labels, each replaced with probability
   ``label_drop_prob`` (the style-transfer original: 0.15) by the **null class id
   ``num_classes``** (an embedding table needs ``num_classes + 1`` rows; guidance
   evaluates the unconditional branch at that id).
4. Loss ``|v(x_t) - u_t|^2`` (mean over features). With ``score_head`` the model returns
   ``[..., 2 C]`` (velocity channels, then score channels, on the last axis) and the loss
   adds ``score_weight |sigma_t s(x_t) + z|^2``: the score target ``-z / sigma_t`` with
   weight ``sigma_t^2`` (Song et al. 2021's ``lambda = sigma^2``), finite at the ends.

The bridge and interpolant ``u_t`` carry ``gamma'(t) z ~ sigma / sqrt(t)`` near ``t = 0,
1``: ``t_min > 0`` bounds it (torchcfm draws ``t ~ U(0, 1)``, the default here too).
``aux``: ``loss``, ``velocity_loss``, ``score_loss`` (0 without a score head) and
``pairs_converged`` (1.0 unless the OT pairing failed; the rows then stay as they come).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxdiff._broadcast import broadcast_t
from jaxdiff._keys import as_key, example_keys
from jaxdiff._validation import check_bool, check_choice, check_int_range, concrete_value
from jaxdiff.flows.paths import (
    ProbabilityPath,
    independent_path,
    interpolant_path,
    schrodinger_bridge_path,
)
from jaxdiff.ot.pairs import MAX_SINKHORN_ITERATIONS, SOLVERS, ot_pairs
from jaxdiff.train.objectives import _float_data, _mse, _noise, _number, as_batch

__all__ = [
    "COUPLINGS",
    "TIME_SAMPLERS",
    "CFMObjective",
    "CoupledBatch",
    "TimeSampler",
    "cfm_objective",
    "interpolant_objective",
    "ot_cfm_objective",
    "sb_cfm_objective",
]

COUPLINGS = ("independent", "exact", "sinkhorn")
TIME_SAMPLERS = ("uniform", "logit_normal")


@struct.dataclass
class TimeSampler:
    """Training times ``t = t_min + (1 - 2 t_min) u`` in ``[t_min, 1 - t_min]``.

    ``"uniform"``: ``u ~ U(0, 1)``. ``"logit_normal"``: ``u = sigmoid(loc + scale n)``,
    ``n ~ N(0, 1)`` (Esser et al. 2024, "Scaling rectified flow transformers", sec. 3.1,
    whose ``t = 0`` is data as here: ``loc > 0`` favours the noisy end).

    Attributes:
      loc: logit-normal location (traced).
      scale: logit-normal scale ``> 0`` (traced).
      t_min: ``[0, 0.5)`` margin at both ends (traced).
      name: ``"uniform"`` or ``"logit_normal"`` (static).
    """

    loc: Any = 0.0
    scale: Any = 1.0
    t_min: Any = 0.0
    name: str = struct.field(pytree_node=False, default="uniform")

    @classmethod
    def create(cls, name: str = "uniform", loc=0.0, scale=1.0, t_min=0.0) -> TimeSampler:
        """Validate and build (concrete numbers)."""
        name = check_choice("time_sampler", name, TIME_SAMPLERS)
        loc = _number("loc", loc, None)
        scale = _number("scale", scale, 0.0, strict=True)
        if not _number("t_min", t_min, 0.0) < 0.5:
            raise ValueError(f"t_min={t_min!r} is out of range; allowed: 0 <= t_min < 0.5")
        return cls(loc=loc, scale=scale, t_min=float(t_min), name=name)

    def sample(self, key, dtype=jnp.float32) -> jax.Array:
        """One time per key: a scalar for one key, ``[B]`` for ``[B]`` keys."""
        key = as_key(key)
        if key.ndim:
            return jax.vmap(lambda k: self.sample(k, dtype))(key)
        if self.name == "uniform":
            u = jax.random.uniform(key, (), dtype)
        else:
            u = jax.nn.sigmoid(self.loc + self.scale * jax.random.normal(key, (), dtype))
        return (self.t_min + (1.0 - 2.0 * self.t_min) * u).astype(dtype)


@struct.dataclass
class CoupledBatch:
    """The paired rows one step trains on (what :meth:`CFMObjective.couple` returns).

    ``x0 = x[i]`` and ``x1 = x1[j]`` (``[B, ...]``), ``labels[i]`` and ``context[i]`` (or
    None), the int32 indices ``i``, ``j`` ``[B]`` (``j`` a permutation for ``"exact"``) and
    the bool scalar ``converged`` (False: the OT pairing failed, ``i = j = arange(B)``).
    """

    x0: jax.Array
    x1: jax.Array
    labels: Any
    context: Any
    i: jax.Array
    j: jax.Array
    converged: jax.Array


def _gather(tree, i):
    return jax.tree.map(lambda a: jnp.asarray(a)[i], tree)


@struct.dataclass
class CFMObjective:
    """Conditional flow matching on a path and a coupling (see the module docstring).

    Traced: ``path`` (a :class:`~jaxdiff.flows.paths.ProbabilityPath`), ``time`` (a
    :class:`TimeSampler`), ``time_scale`` (the model sees ``t * time_scale``), ``epsilon``
    (absolute Sinkhorn regularisation, POT's ``reg``; ``"sinkhorn"`` only),
    ``label_drop_prob`` and ``score_weight``. Static: ``coupling``, ``class_conditional``
    (pair within labels), ``num_classes`` (the model is told labels; None: not),
    ``score_head``, ``max_iterations`` (Sinkhorn's cap) and ``solver`` (the exact
    coupling's assignment solver, :data:`jaxdiff.ot.pairs.SOLVERS`).
    """

    path: ProbabilityPath
    time: TimeSampler
    time_scale: Any = 1.0
    epsilon: Any = None
    label_drop_prob: Any = 0.0
    score_weight: Any = 1.0
    coupling: str = struct.field(pytree_node=False, default="independent")
    class_conditional: bool = struct.field(pytree_node=False, default=False)
    num_classes: int | None = struct.field(pytree_node=False, default=None)
    score_head: bool = struct.field(pytree_node=False, default=False)
    max_iterations: int = struct.field(pytree_node=False, default=2000)
    solver: str = struct.field(pytree_node=False, default="auto")

    @classmethod
    def create(
        cls,
        path: ProbabilityPath,
        *,
        coupling: str = "independent",
        time_sampler: str | TimeSampler = "uniform",
        time_scale=1.0,
        epsilon=None,
        class_conditional: bool = False,
        num_classes: int | None = None,
        label_drop_prob=0.0,
        score_head: bool = False,
        score_weight=1.0,
        max_iterations: int = 2000,
        solver: str = "auto",
    ) -> CFMObjective:
        """Validate and build; the arguments are the attributes.

        ``time_sampler`` is a name for :meth:`TimeSampler.create` or a :class:`TimeSampler`.

        Raises:
          TypeError: a wrong type (``path``, ``time_sampler``, bools, ints, numbers).
          ValueError: unknown names, out-of-range values, ``epsilon`` without (or
            missing from) ``"sinkhorn"``, ``class_conditional`` without OT pairs, label
            dropout without ``num_classes``, a score head on a ``sigma = 0`` path.
        """
        if not isinstance(path, ProbabilityPath):
            raise TypeError(f"path must be a ProbabilityPath, got {type(path).__name__}")
        coupling = check_choice("coupling", coupling, COUPLINGS)
        if isinstance(time_sampler, str):
            time_sampler = TimeSampler.create(time_sampler)
        if not isinstance(time_sampler, TimeSampler):
            raise TypeError(f"time_sampler must be a name or TimeSampler, got {time_sampler!r:.40}")
        if (epsilon is None) == (coupling == "sinkhorn"):
            raise ValueError(
                f"epsilon={epsilon!r} with coupling={coupling!r}: allowed only, "
                "and required, with coupling='sinkhorn'"
            )
        epsilon = None if epsilon is None else _number("epsilon", epsilon, 0.0, strict=True)
        class_conditional = check_bool("class_conditional", class_conditional)
        if class_conditional and coupling == "independent":
            raise ValueError(
                "class_conditional=True needs coupling 'exact' or 'sinkhorn', "
                "got coupling='independent'"
            )
        num_classes = (
            None if num_classes is None else check_int_range("num_classes", num_classes, 1)
        )
        drop = _number("label_drop_prob", label_drop_prob, 0.0)
        if drop >= 1.0:
            raise ValueError(f"label_drop_prob={drop} is out of range; allowed: [0, 1)")
        if drop > 0 and num_classes is None:
            raise ValueError(f"label_drop_prob={drop} needs num_classes (the null id)")
        score_head = check_bool("score_head", score_head)
        sigma = concrete_value(path.sigma)
        if score_head and sigma is not None and not float(sigma) > 0:
            raise ValueError(f"score_head=True needs a path with sigma > 0, got sigma={sigma}")
        return cls(
            path=path,
            time=time_sampler,
            time_scale=_number("time_scale", time_scale, 0.0, strict=True),
            epsilon=epsilon,
            label_drop_prob=drop,
            score_weight=_number("score_weight", score_weight, 0.0),
            coupling=coupling,
            class_conditional=class_conditional,
            num_classes=num_classes,
            score_head=score_head,
            max_iterations=check_int_range(
                "max_iterations", max_iterations, 1, MAX_SINKHORN_ITERATIONS
            ),
            solver=check_choice("solver", solver, SOLVERS),
        )

    def _labels(self, batch, name: str, n: int):
        """``batch[name]`` as checked int class ids ``[n]``, or None when absent."""
        if name not in batch:
            return None
        labels = jnp.asarray(batch[name])
        if labels.dtype == jnp.bool_ or not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"batch[{name!r}] must be int class ids, got dtype {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(f"batch[{name!r}] must have shape [B]=({n},), got {labels.shape}")
        host, top = concrete_value(labels), self.num_classes
        if host is not None and top is not None and (host.min() < 0 or host.max() >= top):
            raise ValueError(
                f"batch[{name!r}] entries must lie in [0, num_classes={top}), got range "
                f"[{int(host.min())}, {int(host.max())}]"
            )
        return labels

    def couple(self, key, batch) -> CoupledBatch:
        """The rows one step pairs (step 1 of the module docstring).

        ``key``: one key or ``[B]`` per-example keys; ``batch``: an array or a dict
        (see the module docstring). Returns a :class:`CoupledBatch`.
        """
        batch = as_batch(batch)
        x0 = _float_data(batch)
        n = x0.shape[0]
        keys = example_keys(key, n)
        labels = self._labels(batch, "labels", n)
        if labels is None and (self.num_classes is not None or self.class_conditional):
            raise ValueError(
                f"batch needs 'labels' (int class ids [{n}]) for num_classes="
                f"{self.num_classes}, class_conditional={self.class_conditional}"
            )
        if self.num_classes is not None and "context" in batch:
            raise ValueError(
                "batch has both 'context' and 'labels' while num_classes is set: the model "
                "is told the labels as its context; drop one"
            )
        context = batch.get("context")
        if "x1" in batch:
            x1 = jnp.asarray(batch["x1"], x0.dtype)
            if x1.shape != x0.shape:
                raise ValueError(f"batch['x1'] shape {x1.shape} must equal x's {x0.shape}")
        else:
            x1 = _noise(jax.vmap(lambda k: jax.random.split(k)[1])(keys), x0)
        ar = jnp.arange(n, dtype=jnp.int32)
        if self.coupling == "independent":
            return CoupledBatch(x0, x1, labels, context, ar, ar, jnp.asarray(True))
        labels1 = self._labels(batch, "labels1", n)
        options = {}
        if self.class_conditional:
            options = dict(labels0=labels, labels1=labels if labels1 is None else labels1)
        if self.coupling == "sinkhorn":
            options.update(epsilon=self.epsilon, max_iterations=self.max_iterations)
        else:
            options.update(solver=self.solver)
        pairs = ot_pairs(
            jax.random.fold_in(keys[0], 2),
            x0,
            x1,
            method=self.coupling,
            relative_epsilon=False,
            **options,
        )
        i = pairs.i
        return CoupledBatch(
            pairs.x0, pairs.x1, _gather(labels, i), _gather(context, i), i, pairs.j, pairs.converged
        )

    def _losses(self, key, params, apply_fn, batch):
        """``([B] total losses, aux of scalars)``."""
        batch = as_batch(batch)
        keys = example_keys(key, jnp.shape(batch["x"])[0])
        pairs = self.couple(keys, batch)
        x0, x1 = pairs.x0, pairs.x1
        k_t = jax.vmap(lambda k: jax.random.split(k)[0])(keys)
        k_z = jax.vmap(lambda k: jax.random.fold_in(jax.random.split(k)[1], 1))(keys)
        t = self.time.sample(k_t, x0.dtype)
        xt, z = self.path.sample_xt(k_z, x0, x1, t)
        context = pairs.context
        if self.num_classes is not None:
            k_drop = jax.vmap(lambda k: jax.random.fold_in(k, 1))(k_t)
            drop = jax.vmap(lambda k: jax.random.bernoulli(k, self.label_drop_prob))(k_drop)
            context = jnp.where(drop, self.num_classes, pairs.labels).astype(jnp.int32)
        out = apply_fn(params, xt, t * self.time_scale, context)
        want = xt.shape[:-1] + (2 * xt.shape[-1],) if self.score_head else xt.shape
        if out.shape != want:
            raise ValueError(
                f"apply_fn returned shape {out.shape}; expected {want} (score_head="
                f"{self.score_head}: velocity{' then score channels' * self.score_head})"
            )
        vel = _mse(out[..., : xt.shape[-1]], self.path.u_t(x0, x1, t, xt))
        score = jnp.zeros_like(vel)
        if self.score_head:
            gamma = broadcast_t(self.path.sigma_t(t), xt)
            score = _mse(gamma * out[..., xt.shape[-1] :].astype(xt.dtype), -z)
        total = vel + self.score_weight * score
        means = {"loss": total, "velocity_loss": vel, "score_loss": score}
        aux = {name: jnp.mean(value) for name, value in means.items()}
        return total, {**aux, "pairs_converged": pairs.converged.astype(jnp.float32)}

    def per_example_loss(self, key, params, apply_fn, batch) -> jax.Array:
        """``[B]`` losses (velocity plus weighted score loss); see the module docstring."""
        return self._losses(key, params, apply_fn, batch)[0]

    def __call__(self, key, params, apply_fn, batch) -> tuple[jax.Array, dict]:
        """Return ``(loss, aux)``: the mean loss and scalar diagnostics."""
        total, aux = self._losses(key, params, apply_fn, batch)
        return aux["loss"], aux


def cfm_objective(sigma=0.0, **options) -> CFMObjective:
    """I-CFM (Tong et al. 2023): the independent path, independent coupling.

    ``sigma=0`` with the default options is ``FlowMatchingObjective.create()``.
    ``options``: the keyword arguments of :meth:`CFMObjective.create`.
    """
    return CFMObjective.create(independent_path(sigma), **options)


def ot_cfm_objective(sigma=0.0, **options) -> CFMObjective:
    """OT-CFM (Tong et al. 2023; torchcfm's ``ExactOptimalTransportConditionalFlowMatcher``).

    The independent path on exact minibatch OT pairs; ``class_conditional=True`` pairs
    within labels. ``options``: those of :meth:`CFMObjective.create`.
    """
    return CFMObjective.create(independent_path(sigma), coupling="exact", **options)


def sb_cfm_objective(sigma=1.0, *, coupling: str = "sinkhorn", **options) -> CFMObjective:
    """SB-CFM (Tong et al. 2023): the Brownian-bridge path on entropic pairs.

    With ``coupling="sinkhorn"`` the pairs come from the entropic plan at the absolute
    ``epsilon = 2 sigma^2`` (cost ``|x0 - x1|^2``; see :mod:`jaxdiff.flows.paths`), the
    static Schrödinger bridge of ``dX = sigma dW``. ``coupling="exact"`` is torchcfm's
    default (its authors find exact pairs work as well at common batch sizes,
    torchcfm#143; its notebooks thus never used the entropic plan, torchcfm#49).
    ``options``: those of :meth:`CFMObjective.create` (not ``epsilon``).
    """
    path = schrodinger_bridge_path(sigma)
    coupling = check_choice("coupling", coupling, ("exact", "sinkhorn"))
    epsilon = 2.0 * path.sigma**2 if coupling == "sinkhorn" else None
    return CFMObjective.create(path, coupling=coupling, epsilon=epsilon, **options)


def interpolant_objective(sigma=1.0, *, interpolation: str = "linear", **options) -> CFMObjective:
    """Stochastic interpolants (Albergo, Boffi & Vanden-Eijnden 2023), independent pairs.

    ``score_head=False`` learns the velocity ``b`` only (all an ODE sampler needs);
    ``score_head=True`` learns ``b`` and the score ``s``, the model returning both on the
    last axis, for SDE samplers: for any ``eps >= 0`` the step from ``t`` to ``t - h``,
    ``x - h (b - eps s) + sqrt(2 eps h) n``, keeps the marginals of ``x_t`` (the
    Fokker-Planck equation of Albergo et al. 2023, sec. 2, run in our time direction).
    ``options``: those of :meth:`CFMObjective.create`.
    """
    return CFMObjective.create(interpolant_path(sigma, interpolation), **options)
