"""Sum-constrained Skellam bridge: per-feature batch totals follow the schedule exactly.

Upstream (Counting Flows, github.com/njwfish/counting_flows,
``bridges/cupy/constrained.py``, ``SkellamMeanConstrainedBridge``) couples the rows of a
batch so that, for every feature ``j``, the batch total ``sum_b x_t[b, j]`` interpolates
between the totals of ``x0`` and ``x1``; in sampling, ``x0_hat`` is first projected onto the
target totals ``S_0 = round(batch * mu0)`` and the final sample has exactly those totals.

Construction here. Per entry the latent jumps split into births ``U = B`` and deaths
``V = N - B`` (``bridge.py``); independent thinning with probability ``rho`` keeps
``Binomial(U, rho)`` births and ``Binomial(V, rho)`` deaths. Conditioned on the kept
*totals* of a feature, the kept births (deaths) are a uniform subset of all births
(deaths) of that feature: a multivariate hypergeometric over the batch. The totals are
chosen so that

    sum_b (x_t - x0)[b, j] = D_t[j] := round(w(t) * sum_b (x1 - x0)[b, j])   (exactly),

with the kept deaths ``round(rho * sum V)`` clipped to the feasible range. Differences from
upstream, with reasons: upstream rounds the kept-jump and kept-birth totals separately,
then draws births by a Metropolis swap chain (``ffh``, 75 sweeps) that only approximates
the conditional law, and guards feasibility with asserts (its comments note rounding and
parity failures); the two exact multivariate
hypergeometrics here need no chain, are always feasible, and make the constraint a closed
form at every grid point (``T_k`` below), not only at ``t = 0``. The time is shared by the
whole batch (the rows are coupled), as upstream; the time is continuous, not a grid index.

Sampling: with ``S_0`` the target totals and ``D = sum_b x1 - S_0``, the state at grid time
``t_k = k / n_steps`` has totals ``T_k = S_0 + round(w(t_k) * D)`` exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._keys import as_key
from jaxdiff._validation import concrete_value
from jaxdiff.counting.bridge import SkellamBridge, bridge_latent
from jaxdiff.counting.checks import (
    as_float_array,
    bridge_options,
    check_counts,
    check_guidance,
    check_model,
    check_n_steps,
    check_time_values,
)
from jaxdiff.counting.random import MAX_COUNT, multinomial_split, multivariate_hypergeometric
from jaxdiff.counting.sampling import (
    CountingSampleOutput,
    model_prediction,
    run_reverse_chain,
    time_grid,
)

__all__ = [
    "ConstrainedSkellamBridge",
    "ReflectedSkellamBridge",
    "constrained_thin",
    "project_column_sums",
]


def constrained_thin(key, up, down, net, frac):
    """Thin births ``up`` and deaths ``down`` (int ``[batch, d]``) with fixed column totals.

    Keeps ``V = clip(round(frac * sum(down)))`` deaths and ``V + net`` births per column,
    each a multivariate hypergeometric over the batch; requires ``net`` (int ``[d]``) between
    0 and ``sum(up) - sum(down)`` (same sign), which keeps the range non-empty.

    Returns:
        ``(up_kept, down_kept)`` int32 ``[batch, d]`` with
        ``sum_b (up_kept - down_kept) == net`` exactly.
    """
    k_up, k_down = jax.random.split(key)
    su, sd = up.sum(0), down.sum(0)
    v = jnp.round(frac * sd.astype(jnp.result_type(float))).astype(jnp.int32)
    v = jnp.clip(v, jnp.maximum(0, -net), jnp.minimum(sd, su - net))
    return multivariate_hypergeometric(k_up, up, v + net), multivariate_hypergeometric(
        k_down, down, v
    )


def project_column_sums(key, x, target):
    """Move non-negative counts ``x`` ``[batch, d]`` onto column totals ``target`` ``[d]``.

    As upstream ``proportional_proj``: missing counts are added multinomially in proportion
    to ``x`` (uniformly over rows where a column is all zero); surplus counts are removed
    uniformly at random without replacement (multivariate hypergeometric).
    """
    k_add, k_rm = jax.random.split(key)
    col = x.sum(0)
    gap = target - col
    weights = jnp.where(col[None] > 0, x, 1).astype(jnp.result_type(float))
    add = multinomial_split(k_add, jnp.maximum(gap, 0), weights)
    remove = multivariate_hypergeometric(k_rm, x, jnp.maximum(-gap, 0))
    return x + add - remove


def _shared_time(key, t, batch):
    ft = jnp.result_type(float)
    if t is None:
        return jax.random.uniform(key, (), ft)
    t = as_float_array("t", t)
    if t.shape not in ((), (batch,), (batch, 1)):
        raise ValueError(f"t must be a float or have shape ({batch}, 1), got shape {t.shape}")
    host = check_time_values(t)  # None when traced: the first row's time is used
    if host is not None and host.size and np.ptp(host) > 0:
        raise ValueError("t must be the same for every row of a constrained bridge batch")
    return t.reshape(-1)[0] if t.ndim else t


class ConstrainedSkellamBridge:
    """Skellam bridge whose per-feature batch totals follow the schedule exactly.

    Same constructor and call as ``SkellamBridge``; ``homogeneous_time`` is accepted for
    symmetry but the time is always shared by the batch.
    """

    def __init__(
        self,
        slack_sampler,
        *,
        schedule_type="linear",
        delta=False,
        homogeneous_time=True,
        **schedule_kwargs,
    ):
        options = bridge_options(
            slack_sampler, schedule_type, delta, homogeneous_time, schedule_kwargs
        )
        self.slack_sampler, self.weight_schedule, self.delta, _ = options
        self.homogeneous_time = True  # the rows are coupled: the time is always shared
        self.schedule_type = self.weight_schedule.schedule_type

    def __call__(self, key, x0, x1, t=None):
        """Sample ``(t [batch, 1] float32, x_t int32 [batch, d], target)``.

        ``sum_b x_t`` equals ``sum_b x0 + round(w(t) * sum_b (x1 - x0))`` exactly.
        """
        key = as_key(key)
        x0 = check_counts("x0", x0)
        x1 = check_counts("x1", x1, x0.shape)
        k_t, k_m, k_thin = jax.random.split(key, 3)
        batch = x0.shape[0]
        t = _shared_time(k_t, t, batch)
        w_t = self.weight_schedule(t)
        diff = x1 - x0
        m = self.slack_sampler(k_m, jnp.abs(diff), self.weight_schedule(1.0))
        n_1, b_1 = bridge_latent(diff, m.astype(jnp.int32))
        net = jnp.round(w_t * diff.sum(0)).astype(jnp.int32)
        up, down = constrained_thin(k_thin, b_1, n_1 - b_1, net, w_t)
        x_t = x0 + up - down
        t_out = jnp.full((batch, 1), t, jnp.float32)
        return t_out, x_t, (x0 - x_t) if self.delta else x0

    def sample(
        self,
        key,
        x1,
        model,
        n_steps,
        *,
        mu0=None,
        context=None,
        return_trajectory=False,
        guidance_x0=None,
        guidance_schedule=None,
    ) -> CountingSampleOutput:
        """Generate ``x0`` from ``x1`` with batch totals ``T_k`` exact at every step.

        Arguments as ``SkellamBridge.sample``, plus ``mu0``: float ``[d]`` target per-feature
        batch mean of ``x0`` (upstream's ``mu_0``; default: the mean of ``x1``, i.e. the
        totals are kept). The final sample has column totals ``round(batch * mu0)``.
        Predictions are clipped at 0 before projection (counts).

        Returns:
            ``CountingSampleOutput`` (``samples``, optional ``trajectory``, health), as
            ``SkellamBridge.sample``; rows of a non-finite model output hold
            ``INVALID_COUNT``, so their column totals are then no longer exact.
        """
        key = as_key(key)
        x1 = check_counts("x1", x1)
        check_model(model)
        n_steps, return_trajectory = check_n_steps(n_steps, x1.shape, return_trajectory)
        gx0, gs = check_guidance(guidance_x0, guidance_schedule, x1.shape, n_steps)
        s0 = target_totals(mu0, x1)
        w_grid = self.weight_schedule(time_grid(n_steps))
        net_grid = jnp.round(w_grid[:, None] * (x1.sum(0) - s0)).astype(jnp.int32)

        def predict(k_model, k, t, x_t):
            return model_prediction(model, k_model, x_t, t, context, k, self.delta, gx0, gs)

        def step(k_step, k, x_t, x0_hat):
            k_proj, k_m, k_thin = jax.random.split(k_step, 3)
            x0_hat = project_column_sums(k_proj, jnp.maximum(x0_hat, 0), s0)
            diff = x_t - x0_hat
            m = self.slack_sampler(k_m, jnp.abs(diff), w_grid[k]).astype(jnp.int32)
            n_t, b_t = bridge_latent(diff, m)
            rho = w_grid[k - 1] / w_grid[k]
            up, down = constrained_thin(k_thin, b_t, n_t - b_t, net_grid[k - 1], rho)
            return x0_hat + up - down, n_t

        return run_reverse_chain(
            key, x1, n_steps, predict, step, return_trajectory=return_trajectory
        )


def target_totals(mu0, x1):
    """Column totals ``round(batch * mu0)`` int32 ``[d]`` (default: the totals of ``x1``)."""
    batch, dim = x1.shape
    if mu0 is None:
        return x1.sum(0)
    mu0 = as_float_array("mu0", mu0)
    if mu0.shape != (dim,):
        raise ValueError(f"mu0 must have shape ({dim},), got {mu0.shape}")
    host = concrete_value(mu0)
    if host is not None and (np.any(host < 0) or np.any(host * batch > MAX_COUNT)):
        raise ValueError(
            f"mu0 must be >= 0 (per-feature mean counts) with batch * mu0 <= 2**24; got "
            f"values in [{host.min()}, {host.max()}] for batch {batch}"
        )
    return jnp.round(jnp.clip(mu0 * batch, 0, MAX_COUNT)).astype(jnp.int32)


def _nonnegative_counts(field, x):
    """``check_counts(field, x)``, and ``>= 0`` where the values are concrete."""
    x = check_counts(field, x)
    host = concrete_value(x)
    if host is not None and host.min() < 0:
        raise ValueError(f"{field} must be non-negative counts, got minimum {int(host.min())}")
    return x


class ReflectedSkellamBridge(SkellamBridge):
    """Skellam bridge reflected at 0, for non-negative counts (not in upstream).

    The signed bridge of ``SkellamBridge`` can dip below 0 between non-negative ``x0`` and
    ``x1``; this one reports ``|x_t|``, the nearest-neighbour path reflected at 0, with the
    same endpoints. The forward marginal is exactly the folded signed marginal. Sampling
    reflects each signed reverse step (from ``x_t`` toward ``max(x0_hat, 0)``); as ``|.|`` of
    a Markov chain is not Markov in general, that kernel is a heuristic, not the exact
    reverse of the reflected process. Same constructor, call and ``sample`` as
    ``SkellamBridge``; every state is ``>= 0``.
    """

    def __call__(self, key, x0, x1, t=None):
        """``(t, |x_t|, target)`` as ``SkellamBridge.__call__``; needs ``x0, x1 >= 0``."""
        x0 = _nonnegative_counts("x0", x0)
        x1 = _nonnegative_counts("x1", x1)
        t, x_t, target = super().__call__(key, x0, x1, t)
        x_t = jnp.abs(x_t)
        return t, x_t, (x0 - x_t) if self.delta else target

    def step_with_jumps(self, key, t_curr, t_next, x_t, x0_hat):
        """Reflected reverse step ``|signed step toward max(x0_hat, 0)|`` and its jumps."""
        x_s, n_t = super().step_with_jumps(key, t_curr, t_next, x_t, jnp.maximum(x0_hat, 0))
        return jnp.abs(x_s), n_t
