"""The output of :func:`jaxdiff.ot.sinkhorn`: dual potentials and a lazily rebuilt plan.

Notation (Cuturi 2013, "Sinkhorn Distances", NeurIPS; Peyré & Cuturi 2019,
"Computational Optimal Transport", Sec. 4.2): points ``x`` ``[n, d]`` with weights ``a``
``[n]``, points ``y`` ``[m, d]`` with weights ``b`` ``[m]``, cost ``C_ij = c(x_i, y_j)``,
regularisation ``epsilon`` (absolute). The entropic plan is recovered from the dual
potentials ``f`` ``[n]`` and ``g`` ``[m]`` as (Peyré & Cuturi, Prop. 4.3, log domain)

    P_ij = exp((f_i + g_j - C_ij) / epsilon),

which is ott-jax's convention (its ``lse_mode``). The plan is never stored: it is rebuilt
from ``x``, ``y`` and the potentials when needed, so the result stays O(n + m).

Solved on a kernel operator (``sinkhorn(geometry=op)``), the result keeps the operator
instead of points; in scaling space the plan is ``diag(u) K diag(v)`` with
``u = exp(f / epsilon)``, ``v = exp(g / epsilon)``, applied through the operator. Only
the direct operator can form the dense plan; the others raise a clear error there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from ott.geometry import geometry as ott_geometry
from ott.geometry import pointcloud

from jaxdiff._keys import as_key
from jaxdiff._validation import check_int_range
from jaxdiff.ot.costs import make_cost_fn
from jaxdiff.ot.health import INPUT_CHECKS
from jaxdiff.ot.kernel_ops import DirectGeometry
from jaxdiff.ot.online import OnlineGeometry

__all__ = ["OTResult"]


@struct.dataclass
class OTResult:
    """Entropic OT solution of one problem (a pytree; batched under ``vmap``).

    The methods act on one problem; for a batched result (from ``vmap(sinkhorn)``)
    call them under ``vmap`` too.

    Attributes:
        f: ``[n]`` dual potential on the ``x`` points.
        g: ``[m]`` dual potential on the ``y`` points.
        a: ``[n]`` source weights.
        b: ``[m]`` target weights.
        x: ``[n, d]`` source points (kept so the plan can be rebuilt lazily); None when
            solved on a kernel operator.
        y: ``[m, d]`` target points; None on a kernel operator.
        epsilon: scalar, the absolute regularisation actually used (after
            ``relative_epsilon`` scaling).
        primal_cost: scalar ``<P, C>``, the transport cost of the entropic plan; None on
            the random-feature, Nyström and laplacian-fft operators (their cost is not
            available without forming ``n x m``).
        reg_ot_cost: scalar, ott-jax's ``reg_ot_cost``:
            ``<P, C> + epsilon KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)``.
        converged: bool scalar, the marginal error fell below ``threshold`` (and no NaN).
        n_iters: int scalar, Sinkhorn iterations run (a multiple of ``inner_iterations``).
        errors: ``[ceil(max_iterations / inner_iterations)]`` marginal errors (1-norm)
            recorded every ``inner_iterations`` steps; ``-1`` where not reached.
        input_errors: ``[len(INPUT_CHECKS)]`` bool, True where a check of the inputs
            failed on device (see :func:`input_problems`); any True makes
            ``converged`` false.
        divergence: scalar debiased Sinkhorn divergence when requested with
            ``sinkhorn(..., divergence=True)``, else None.
        operator: the kernel operator (an ott-jax geometry) solved on, or None.
        cost: static, the cost name (``"sqeuclidean"``, ``"euclidean"``, ``"cosine"``);
            None on a kernel operator (its ``kernel_type`` says).
        tau_a: static, ott-jax's unbalancedness on ``a`` (1.0 = balanced).
        tau_b: static, same on ``b``.
        online: static, True when solved on the online geometry (the plan is then
            applied block by block, never formed).
        backend: static, the online geometry's forward reduction.
        precision: static, the online geometry's dot-product precision.
        lse_mode: static, True when solved in the log domain; False for scaling-space
            (kernel-product) iterations on an operator without a log-domain form.
    """

    f: jax.Array
    g: jax.Array
    a: jax.Array
    b: jax.Array
    x: jax.Array | None
    y: jax.Array | None
    epsilon: jax.Array
    primal_cost: jax.Array | None
    reg_ot_cost: jax.Array
    converged: jax.Array
    n_iters: jax.Array
    errors: jax.Array
    input_errors: jax.Array
    divergence: jax.Array | None = None
    operator: ott_geometry.Geometry | None = None
    cost: str | None = struct.field(pytree_node=False, default="sqeuclidean")
    tau_a: float = struct.field(pytree_node=False, default=1.0)
    tau_b: float = struct.field(pytree_node=False, default=1.0)
    online: bool = struct.field(pytree_node=False, default=False)
    backend: str = struct.field(pytree_node=False, default="xla")
    precision: str = struct.field(pytree_node=False, default="float32")
    lse_mode: bool = struct.field(pytree_node=False, default=True)

    @classmethod
    def create(cls, **kwargs) -> OTResult:
        """Build a result from keyword fields (see the class attributes)."""
        return cls(**kwargs)

    @property
    def geometry(self) -> ott_geometry.Geometry:
        """The ott-jax geometry (absolute ``epsilon``) the plan lives on."""
        if self.operator is not None:
            return self.operator
        kwargs = {"cost_fn": make_cost_fn(self.cost), "epsilon": self.epsilon}
        if self.online:
            return OnlineGeometry(
                self.x, self.y, backend=self.backend, precision=self.precision, **kwargs
            )
        return pointcloud.PointCloud(self.x, self.y, **kwargs)

    def input_problems(self) -> list[str]:
        """Names of the failed input checks (host side; one problem, not under jit)."""
        flags = np.asarray(self.input_errors)
        return [name for name, bad in zip(INPUT_CHECKS, flags, strict=True) if bad]

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``, the plan's shape."""
        return self.f.shape[-1], self.g.shape[-1]

    def _log_plan(self, what: str) -> jax.Array:
        """``[n, m]`` log of the plan, ``(f_i + g_j - C_ij) / epsilon`` (dense, on request)."""
        if self.operator is None:
            cost = make_cost_fn(self.cost).all_pairs(self.x, self.y)
        elif isinstance(self.operator, DirectGeometry):
            cost = self.operator.cost_matrix
        else:
            n, m = self.shape
            raise ValueError(
                f"{what} needs the dense {n} x {m} plan, which the "
                f"{self.operator.solver_type!r} operator never forms; apply the plan with "
                "plan_apply instead (or use solver_type='direct' for small problems)"
            )
        return (self.f[:, None] + self.g[None, :] - cost) / self.epsilon

    @property
    def matrix(self) -> jax.Array:
        """``[n, m]`` dense transport plan ``P`` (materialised; for small problems)."""
        return jnp.exp(self._log_plan("matrix"))

    def plan_apply(self, v: jax.Array, axis: int = 0) -> jax.Array:
        """Apply the plan to vectors without forming it (ott-jax's ``apply`` convention).

        Args:
            v: ``axis=0``: ``[n]`` or ``[batch, n]``, values on the ``x`` points;
                ``axis=1``: ``[m]`` or ``[batch, m]``, values on the ``y`` points.
            axis: 0 returns ``v^T P`` (``[m]`` / ``[batch, m]``); 1 returns ``P v``
                (``[n]`` / ``[batch, n]``). Static.

        Returns:
            The transported values, computed from ``f`` and ``g`` (log domain) or from
            the scalings ``exp(f / epsilon)``, ``exp(g / epsilon)`` (scaling space).
        """
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 or 1, got {axis!r}")
        v = jnp.asarray(v)
        want = self.shape[0] if axis == 0 else self.shape[1]
        if v.ndim not in (1, 2) or v.shape[-1] != want:
            raise ValueError(
                f"v must have shape [{want}] or [batch, {want}] for axis={axis}, got {v.shape}"
            )
        geom = self.geometry
        if self.lse_mode:
            return geom.apply_transport_from_potentials(self.f, self.g, v, axis=axis)
        u, w = geom.scaling_from_potential(self.f), geom.scaling_from_potential(self.g)
        return geom.apply_transport_from_scalings(u, w, v, axis=axis)

    def barycentric_map(self) -> jax.Array:
        """``[n, d]`` barycentric projection ``T(x_i) = sum_j P_ij y_j / a_i``.

        Follows the contract's normalisation by ``a`` (exact for balanced problems,
        where ``P 1 = a`` at convergence); rows with ``a_i = 0`` map to 0.
        (Seguy et al. 2018, "Large-scale optimal transport and mapping estimation", Eq. 11.)

        Raises:
            ValueError: the result was solved on a kernel operator (no target points are
                kept: apply the plan to them with ``plan_apply(y.T, axis=1)``).
        """
        if self.y is None:
            raise ValueError(
                "barycentric_map needs the target points, which a result solved on a kernel "
                "operator does not keep; compute plan_apply(y.T, axis=1).T / a[:, None]"
            )
        py = self.plan_apply(self.y.T, axis=1).T  # [n, d] = P y
        safe_a = jnp.where(self.a > 0, self.a, 1.0)
        return jnp.where(self.a[:, None] > 0, py / safe_a[:, None], 0.0)

    def sample_pairs(self, key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
        """Draw ``num`` index pairs ``(i, j)`` i.i.d. from ``P / sum(P)``.

        Uses ``jax.random.categorical`` on the flattened ``[n * m]`` log-plan, so it
        materialises the plan: meant for minibatch-sized problems.

        Args:
            key: a ``jax.random.key`` (legacy uint32 keys accepted).
            num: number of pairs, static.

        Returns:
            ``(i, j)``, two int arrays ``[num]`` indexing ``x`` and ``y``.
        """
        num = check_int_range("num", num, 1)
        key = as_key(key, "key")
        _, m = self.shape
        flat = jax.random.categorical(key, self._log_plan("sample_pairs").reshape(-1), shape=(num,))
        return flat // m, flat % m
