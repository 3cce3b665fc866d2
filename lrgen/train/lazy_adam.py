"""Lazy Adam: Adam on the rows of a table that a step touches (GLO's per-image codes).

GLO (Bojanowski et al., ICML 2018) learns one code z_i ∈ R^k per training image; a step sees only
the B images of its batch, so only their rows of the (N, k) code table have a gradient. Lazy Adam
keeps Adam's moments and step count per row and updates a row only when it is in the batch
(Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015; the lazy variant as in
TensorFlow's ``LazyAdamOptimizer``, here with a step count per row). For each row i of the
batch's rows I (distinct), with g_i = ∂ℓ_i/∂z_i the gradient of its own image's loss:

    t_i ← t_i + 1
    m_i ← β₁ m_i + (1 − β₁) g_i
    v_i ← β₂ v_i + (1 − β₂) g_i²
    u_i = −α m̂_i / (√v̂_i + ε),     m̂_i = m_i / (1 − β₁^{t_i}),   v̂_i = v_i / (1 − β₂^{t_i})

and the caller sets z_i ← z_i + u_i; rows outside I keep their moments and counts (a row's
moments do not decay while it is not seen, unlike dense Adam on a gradient that is zero there).
Symbols: α the learning rate, β₁ and β₂ the moments' decay rates, ε the denominator's offset,
t_i the number of steps row i has taken, m_i and v_i its first and second moment estimates.

As an optax ``GradientTransformationExtraArgs``: ``init(table)`` gives the per-row state, and
``update(g_rows, state, rows=I)`` takes the gradient of the rows I only, (B, k), and returns
their updates u_I, (B, k) — the whole table's gradient would be an (N, k) array of zeros but B
rows, and the rows must be gathered and scattered anyway.

Example::

    opt = lazy_adam(0.01)
    state = opt.init(codes)                       # codes (N, k)
    u, state = opt.update(g, state, rows=idx)     # g (B, k): ∂L/∂codes[idx]
    codes = codes.at[idx].set(codes[idx] + u)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class LazyAdamState(NamedTuple):
    """Per-row Adam state of an (N, k) table.

    Attributes:
      count: (N,) int32, t_i: the steps row i has taken.
      mu: (N, k), m_i: first moment estimates.
      nu: (N, k), v_i: second moment estimates.
    """

    count: jax.Array
    mu: jax.Array
    nu: jax.Array


def lazy_adam(
    learning_rate: float, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformationExtraArgs:
    """Lazy Adam on the rows of a table (equations in the module docstring).

    Args:
      learning_rate: α.
      b1: β₁, decay of the first moment.
      b2: β₂, decay of the second moment.
      eps: ε, added to √v̂ in the denominator.

    Returns:
      ``init(table (N, k)) -> LazyAdamState`` and
      ``update(g (B, k), state, params=None, *, rows (B,) int) -> (u (B, k), state)``.
    """

    def init_fn(params: jax.Array) -> LazyAdamState:
        n = params.shape[0]
        return LazyAdamState(jnp.zeros((n,), jnp.int32), jnp.zeros(params.shape), jnp.zeros(params.shape))

    def update_fn(updates: jax.Array, state: LazyAdamState, params=None, *, rows: jax.Array):
        del params
        t = state.count[rows] + 1
        m = b1 * state.mu[rows] + (1 - b1) * updates
        v = b2 * state.nu[rows] + (1 - b2) * jnp.square(updates)
        tf = t.astype(jnp.float32)[:, None]
        u = -(learning_rate * (m / (1 - b1**tf)) / (jnp.sqrt(v / (1 - b2**tf)) + eps))
        return u, LazyAdamState(state.count.at[rows].set(t), state.mu.at[rows].set(m), state.nu.at[rows].set(v))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
