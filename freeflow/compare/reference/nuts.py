"""Reference draws by blackjax NUTS: window adaptation, several chains with vmap, float64.

``nuts(log_density, dim, ...)`` accepts

* a torch batch log-density ``(n, d) -> (n,)`` (bridged to JAX by :mod:`.bridge`, one
  batched torch call per leapfrog step for all chains), or
* a Target (anything with ``log_prob`` and ``dim``): its ``log_prob_jax`` (a JAX
  single-position log-density) is used when it has one, else its torch ``log_prob`` is
  bridged, or
* ``jax_log_density=``: your own JAX ``(d,) -> ()`` log-density (fastest: no host callback).

Adaptation.  Each chain runs its own Stan-style window adaptation
(``blackjax.window_adaptation``, vmapped over chains): step size by dual averaging to an
acceptance rate of ``target_acceptance_rate`` and a diagonal (or dense) inverse mass matrix
from the slow windows.  Adapting every chain separately (rather than pooling and sharing one
step size) keeps the chains independent, which is what makes R-hat a meaningful check:
a chain whose adaptation went wrong shows up as disagreement.

Reliability.  The result carries divergences, rank-normalised split R-hat (max over
coordinates), bulk/tail ESS (min over coordinates) from arviz, wall times, and a
``reliable`` flag with reasons: False when divergent transitions exceed
``max_divergence_fraction`` of all draws, when R-hat > ``max_rhat`` (1.01) or when the
smallest ESS is below ``min_ess_per_chain`` per chain.  An unreliable reference is still
returned (to inspect), but :func:`freeflow.compare.compare` flags it in the report.

NUTS is a valid reference for smooth unimodal posteriors.  It is biased on Neal's funnel
(divergences; sd of x0 ≈ 2.4 instead of 3) and visits only a few modes of well-separated
mixtures (gmm40): use the target's exact sampler there.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from ...validation import check_int, check_seed
from .bridge import enable_x64, validate_log_density
from .cache import DrawCache
from .programs import _bridge_for, _programs
from .result import MAX_DIVERGENCE_FRACTION, MAX_RHAT, MIN_ESS_PER_CHAIN, Reference, _diagnose, _reliability_reasons


def _is_target(obj: Any) -> bool:
    """A Target: an object (not a plain function) with a callable ``log_prob``."""
    return callable(getattr(obj, "log_prob", None)) and not _is_plain_function(obj)



def nuts(
    log_density: Callable[[torch.Tensor], torch.Tensor] | Any,
    dim: int | None = None,
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 2000,
    seed: int = 0,
    init: np.ndarray | torch.Tensor | None = None,
    jax_log_density: Callable | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
    *,
    cache_key: str | None = None,
    target_acceptance_rate: float = 0.8,
    max_num_doublings: int = 10,
    dense_mass: bool = False,
    torch_dtype: torch.dtype = torch.float64,
    chunk: int = 250,
    max_rhat: float = MAX_RHAT,
    max_divergence_fraction: float = MAX_DIVERGENCE_FRACTION,
    min_ess_per_chain: float = MIN_ESS_PER_CHAIN,
) -> Reference:
    """Run blackjax NUTS on ``log_density`` and return a :class:`Reference` (see module doc).

    Parameters
    ----------
    log_density : torch ``(n, d) -> (n,)`` log-density, or a Target.
    dim : dimension d (taken from a Target when omitted).
    chains, warmup, draws : chains run in parallel (vmap); adaptation steps and kept draws
        per chain.
    seed : seeds the JAX key and the default initial positions (uniform on [-2, 2]^d, as Stan;
        a start where log p̃ or its gradient is not finite is redrawn from a smaller box).
    init : initial positions, (d,) or (chains, d).
    jax_log_density : a JAX single-position log-density ``(d,) -> ()``; used instead of
        bridging ``log_density`` (which is then only used to validate and name the run).
    cache_dir : when given, draws are cached there keyed by the target's ``config()`` (or
        ``cache_key`` for a plain function, required then) and all settings.
    progress : print the stages and a progress bar over sampling chunks.
    """
    import blackjax
    import jax

    chains = check_int(chains, "chains", minimum=1)
    warmup = check_int(warmup, "warmup", minimum=1)
    draws = check_int(draws, "draws", minimum=4)
    seed = check_seed(seed)
    chunk = check_int(chunk, "chunk", minimum=1)
    max_num_doublings = check_int(max_num_doublings, "max_num_doublings", minimum=1)
    if not 0.0 < float(target_acceptance_rate) < 1.0:
        raise ValueError(f"target_acceptance_rate must be in (0, 1), got {target_acceptance_rate}")

    # -- what to sample -------------------------------------------------------------------
    target = None
    name = "NUTS"
    key_material: Any = None
    if _is_target(log_density):
        target = log_density
        log_density = target.log_prob
        tdim = getattr(target, "dim", None)
        if dim is None:
            dim = tdim
        elif tdim is not None and int(tdim) != int(dim):
            raise ValueError(f"dim={dim} differs from the target's dim={tdim}")
        if jax_log_density is None:
            jax_log_density = _target_jax_log_density(target, dim)
        tname = getattr(target, "name", None) or type(target).__name__
        config = target.config() if callable(getattr(target, "config", None)) else None
        key_material = {"target": tname, "config": config} if config is not None else None
        name = f"NUTS[{tname}]"
    if cache_key is not None:
        key_material = {"cache_key": str(cache_key), "target": key_material}
    if dim is None:
        raise ValueError("dim is required when log_density is a plain function")
    dim = check_int(dim, "dim", minimum=1)
    if log_density is None and jax_log_density is None:
        raise ValueError("log_density (or jax_log_density) is required")

    init_np = _initial_positions(init, chains, dim, seed)
    settings = {
        "chains": chains,
        "warmup": warmup,
        "draws": draws,
        "seed": seed,
        "init": None if init is None else init_np.tolist(),
        "dim": dim,
        "target_acceptance_rate": float(target_acceptance_rate),
        "max_num_doublings": max_num_doublings,
        "dense_mass": bool(dense_mass),
        "chunk": chunk,  # the per-draw random keys depend on it
        "backend": "jax" if jax_log_density is not None else f"torch-bridge[{torch_dtype}]",
        "adaptation": "window_adaptation per chain (vmap)",
        "blackjax": blackjax.__version__,
        "jax": jax.__version__,
    }
    thresholds = {
        "max_rhat": float(max_rhat),
        "max_divergence_fraction": float(max_divergence_fraction),
        "min_ess_per_chain": float(min_ess_per_chain),
    }

    cache = None
    if cache_dir is not None:
        if key_material is None:
            raise ValueError(
                "cache_dir needs a cache_key=... for a plain log_density (a function cannot be "
                "hashed reliably); Targets are keyed by their config()"
            )
        cache = DrawCache(cache_dir, name=name)
        hit = cache.load(key_material, settings, expected_shape=(chains, draws, dim),
                         required=("divergent", "num_integration_steps", "step_size"))
        if hit is not None:
            arrays, scalars = hit
            diag = _diagnose(arrays["draws"], arrays["divergent"], arrays["num_integration_steps"])
            diag.update(_step_stats(arrays))
            diag["grad_evals_warmup"] = int(scalars.get("grad_evals_warmup", -1))
            if progress:
                print(f"{name}: loaded cached draws from {cache.paths(_key(key_material, settings))[0]}")
            return Reference(
                draws=arrays["draws"],
                diagnostics=diag,
                timings={k: float(v) for k, v in scalars.get("timings", {}).items()},
                settings=settings,
                reasons=_reliability_reasons(diag, chains, chains * draws, thresholds),
                from_cache=True,
                name=name,
                divergent=arrays["divergent"].astype(bool),
            )
        if progress:
            print(f"{name}: cache miss ({cache.last_miss_reason}); running NUTS")

    # -- build the JAX log-density ---------------------------------------------------------
    bridge = None
    if init is None:  # default starts: redraw those where log p̃ or its gradient is not finite
        init_np = _finite_default_starts(
            init_np, seed, _jax_value_and_grad(jax_log_density) if jax_log_density is not None
            else _torch_value_and_grad(log_density, torch_dtype))
    if jax_log_density is None:
        validate_log_density(log_density, dim, points=init_np, torch_dtype=torch_dtype)
        bridge = _bridge_for(log_density, dim, torch_dtype)
        logdensity_fn = bridge.logdensity_fn
        calls0 = bridge.n_calls
    else:
        if not callable(jax_log_density):
            raise TypeError("jax_log_density must be callable (d,) -> ()")
        logdensity_fn = jax_log_density

    enable_x64()  # float64 from here on (a global switch: see enable_x64)
    import jax.numpy as jnp

    if bridge is None:
        _validate_jax_log_density(logdensity_fn, init_np)
    run_warmup, sample_chunk = _programs(
        logdensity_fn, warmup, chunk, bool(dense_mass), float(target_acceptance_rate),
        max_num_doublings,
    )
    t0 = time.perf_counter()
    key_warm, key_sample = jax.random.split(jax.random.key(seed))
    if progress:
        print(f"{name}: warmup, {chains} chains x {warmup} steps (window adaptation per chain)")
    states, step_size, inv_mass, warm_steps = run_warmup(
        jax.random.split(key_warm, chains), jnp.asarray(init_np)
    )
    jax.block_until_ready(states.position)
    t1 = time.perf_counter()
    if bridge is not None:
        bridge.raise_if_failed()

    # Full chunks only (one compiled shape); the surplus draws of the last chunk are dropped.
    n_chunks = -(-draws // chunk)
    all_keys = jax.random.split(key_sample, n_chunks * chunk * chains).reshape(
        n_chunks, chunk, chains
    )
    out_pos, out_div, out_steps = [], [], []
    steps = range(n_chunks)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"{name} sampling", unit="chunk")
    for i in steps:
        states, (pos, div, nst) = sample_chunk(states, all_keys[i], step_size, inv_mass)
        out_pos.append(np.array(pos))
        out_div.append(np.array(div))
        out_steps.append(np.array(nst))
    t2 = time.perf_counter()
    if bridge is not None:
        bridge.raise_if_failed()
    step_size_np = np.array(step_size, dtype=np.float64)
    inv_mass_np = np.array(inv_mass, dtype=np.float64)
    warm_steps_np = np.array(warm_steps)

    # (draws, chains, ...) -> (chains, draws, ...)
    draws_np = np.concatenate(out_pos, 0)[:draws].transpose(1, 0, 2).astype(np.float64)
    divergent = np.concatenate(out_div, 0)[:draws].T.astype(bool)
    n_steps = np.concatenate(out_steps, 0)[:draws].T.astype(np.int64)
    if not np.isfinite(draws_np).all():
        raise RuntimeError(f"{name}: NUTS produced non-finite draws; the log-density is broken")
    timings = {"warmup_s": t1 - t0, "sampling_s": t2 - t1, "total_s": t2 - t0}
    arrays = {
        "draws": draws_np,
        "divergent": divergent,
        "num_integration_steps": n_steps,
        "step_size": step_size_np,
        "inverse_mass_matrix": inv_mass_np,
    }
    diag = _diagnose(draws_np, divergent, n_steps)
    diag.update(_step_stats(arrays))
    diag["grad_evals_warmup"] = int(warm_steps_np.sum())
    if bridge is not None:
        diag["torch_calls"] = bridge.n_calls - calls0
    if cache is not None:
        path = cache.save(key_material, settings, arrays,
                          {"timings": timings, "grad_evals_warmup": diag["grad_evals_warmup"]})
        if progress:
            print(f"{name}: draws cached in {path}")
    ref = Reference(
        draws=draws_np,
        diagnostics=diag,
        timings=timings,
        settings=settings,
        reasons=_reliability_reasons(diag, chains, chains * draws, thresholds),
        name=name,
        divergent=divergent,
    )
    if progress:
        print(ref.summary())
    return ref


def _key(key_material, settings):
    from .cache import cache_key

    return cache_key(key_material, settings)


def _is_plain_function(obj: Any) -> bool:
    import types

    return isinstance(obj, (types.FunctionType, types.MethodType, types.BuiltinFunctionType))


def _step_stats(arrays: dict) -> dict:
    return {
        "step_size": np.asarray(arrays["step_size"]).reshape(-1).tolist(),
    }


def _target_jax_log_density(target: Any, dim: int | None) -> Callable | None:
    """The target's ``log_prob_jax`` if it has a working one (the base class raises
    NotImplementedError), else None (then its torch log_prob is bridged)."""
    fn = getattr(target, "log_prob_jax", None)
    if not callable(fn) or dim is None:
        return None
    enable_x64()
    import jax.numpy as jnp

    try:
        fn(jnp.zeros(int(dim)))
    except NotImplementedError:
        return None
    return fn


def _initial_positions(init: Any, chains: int, dim: int, seed: int) -> np.ndarray:
    if init is None:
        return np.random.default_rng(seed).uniform(-2.0, 2.0, size=(chains, dim))
    if isinstance(init, torch.Tensor):
        x = init.detach().cpu().to(torch.float64).numpy().copy()
    else:
        x = np.array(init, dtype=np.float64)
    if x.shape == (dim,):
        x = np.broadcast_to(x, (chains, dim)).copy()
    if x.shape != (chains, dim):
        raise ValueError(f"init must have shape ({dim},) or ({chains}, {dim}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("init contains non-finite values")
    return x


#: default starts: attempts, and the factor by which the uniform box shrinks per attempt
INIT_ATTEMPTS, INIT_SHRINK = 20, 0.8


def _finite_default_starts(x: np.ndarray, seed: int, value_and_grad: Callable) -> np.ndarray:
    """Stan's rule for default initial positions, uniform on [-2, 2]^d, retried where log p̃
    or its gradient is not finite; here each retry draws from a box INIT_SHRINK× smaller
    (INIT_ATTEMPTS attempts, down to ±0.03), since a regression whose logits overflow at ±2
    (|Xw| ≳ 37 in float64 for PyMC's Bernoulli(logit_p) gradient) fails at every draw
    from the full box. Positions that never become finite are left for the validation
    below to report."""
    x = x.copy()
    rng = np.random.default_rng([seed, 1])
    radius = 2.0
    for _ in range(INIT_ATTEMPTS):
        try:
            val, grad = value_and_grad(x)
            ok = np.isfinite(val) & np.isfinite(grad).all(axis=1)
        except Exception:  # noqa: BLE001 - any failure: redraw all, validation reports the rest
            ok = np.zeros(x.shape[0], dtype=bool)
        if ok.all():
            break
        radius *= INIT_SHRINK
        x[~ok] = rng.uniform(-radius, radius, size=(int((~ok).sum()), x.shape[1]))
    return x


def _torch_value_and_grad(log_density: Callable, torch_dtype: torch.dtype) -> Callable:
    def vg(x_np: np.ndarray):
        x = torch.tensor(x_np, dtype=torch_dtype, requires_grad=True)
        with torch.enable_grad():
            out = log_density(x)
            (g,) = torch.autograd.grad(out.sum(), x)
        return out.detach().double().numpy(), g.detach().double().numpy()

    return vg


def _jax_value_and_grad(fn: Callable) -> Callable:
    def vg(x_np: np.ndarray):
        import jax
        import jax.numpy as jnp

        enable_x64()
        val, grad = jax.vmap(jax.value_and_grad(fn))(jnp.asarray(x_np))
        return np.array(val, dtype=np.float64), np.array(grad, dtype=np.float64)

    return vg


def _validate_jax_log_density(fn: Callable, init: np.ndarray) -> None:
    import jax
    import jax.numpy as jnp

    try:
        val, grad = jax.vmap(jax.value_and_grad(fn))(jnp.asarray(init))
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"jax_log_density raised {type(e).__name__}: {e} when called on the initial "
            "positions; it must map one position (d,) to a scalar"
        ) from e
    if val.shape != (init.shape[0],):
        raise ValueError(f"jax_log_density must return a scalar per position, got shape {val.shape[1:]}")
    if not (np.isfinite(np.array(val)).all() and np.isfinite(np.array(grad)).all()):
        raise ValueError("jax_log_density or its gradient is not finite at the initial positions")
