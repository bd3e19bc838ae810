"""A torch -> JAX bridge for log-densities, so that blackjax can sample a torch model.

Convention.  The user's ``log_density`` is a torch function of a batch,
``f: (n, d) -> (n,)``, returning log p~(x) (unnormalised).  blackjax wants a JAX function of
ONE position, ``(d,) -> ()``, that it can ``jit``, ``vmap`` over chains and differentiate.

How.  The JAX function is a ``jax.custom_vjp`` whose forward pass calls torch through
``jax.pure_callback`` and gets the value AND the gradient from one torch call
(``torch.autograd.grad`` of ``f(x).sum()``, valid because row i of f depends on row i of x
only, which :func:`validate_log_density` checks).  The backward pass just multiplies the
cached gradient by the cotangent: no second torch call.  ``vmap_method="broadcast_all"``
makes a ``vmap`` over chains arrive in torch as ONE batched call of shape (chains, d), not a
loop.  Everything is float64 on the JAX side; torch is called in ``torch_dtype`` (float64
by default) and its results are cast to float64.

Exceptions raised inside a callback would break JAX's contract (the behaviour is
undefined), so the callback records the first exception, returns NaN (which NUTS treats as
a divergence), and :meth:`TorchBridge.raise_if_failed` re-raises it after the run.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import torch

LogDensity = Callable[[torch.Tensor], torch.Tensor]


def enable_x64() -> None:
    """Switch JAX to float64 globally (``jax_enable_x64``).

    Global on purpose: host callbacks run on JAX's own threads, where the thread-local
    ``jax.enable_x64`` context manager does not apply, and their float64 results would be
    rejected.  Call before creating any JAX array that should be float64.
    """
    import jax

    jax.config.update("jax_enable_x64", True)


class BridgeError(RuntimeError):
    """``log_density`` raised or misbehaved while blackjax was calling it."""


def _probe_points(dim: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-2.0, 2.0, size=(n, dim))


def validate_log_density(
    log_density: LogDensity,
    dim: int,
    *,
    points: np.ndarray | None = None,
    torch_dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> None:
    """Check that ``log_density`` can serve as a NUTS target before any sampling starts.

    Calls it on a probe batch (``points`` if given, e.g. the chains' initial positions, else
    4 points uniform on [-2, 2]^dim) and checks: it returns a torch tensor of shape (n,), of
    the input's floating dtype, finite at the probe points, differentiable with a finite
    gradient, and row-independent (f(x)[i] == f(x[i:i+1])).  Raises TypeError/ValueError
    naming ``log_density`` otherwise.
    """
    if not callable(log_density):
        raise TypeError(f"log_density must be callable, got {type(log_density).__name__}")
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    x_np = _probe_points(dim, 4, seed) if points is None else np.asarray(points, np.float64)
    if x_np.ndim != 2 or x_np.shape[1] != dim:
        raise ValueError(f"probe points must have shape (n, {dim}), got {x_np.shape}")
    n = x_np.shape[0]
    where = f"on a probe batch of shape ({n}, {dim}) and dtype {torch_dtype}"
    x = torch.tensor(x_np, dtype=torch_dtype, requires_grad=True)
    try:
        with torch.enable_grad():
            out = log_density(x)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"log_density raised {type(e).__name__}: {e} when called {where}. It must accept "
            f"a (n, {dim}) tensor of dtype {torch_dtype} (pass torch_dtype=torch.float32 if it "
            "only works in float32)"
        ) from e
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"log_density must return a torch.Tensor, got {type(out).__name__} {where}"
        )
    if out.shape != (n,):
        raise ValueError(
            f"log_density must return shape ({n},) for an input of shape ({n}, {dim}), got "
            f"{tuple(out.shape)}"
        )
    if out.dtype != torch_dtype:
        raise TypeError(
            f"log_density returned dtype {out.dtype} for an input of dtype {torch_dtype}; it "
            "must compute in its input's dtype (a silent cast loses float64 precision)"
        )
    if not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).nonzero().flatten().tolist()
        raise ValueError(
            f"log_density is not finite at probe rows {bad} {where}: values "
            f"{out.detach().tolist()}. NUTS needs finite starting points: pass init= inside "
            "the support"
        )
    if not out.requires_grad:
        raise ValueError(
            "log_density is not differentiable with respect to its input (its output has no "
            "autograd graph): write it with torch operations, without .detach()/.numpy()"
        )
    (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    if grad is None:
        raise ValueError("log_density's output does not depend on its input x")
    if not torch.isfinite(grad).all():
        raise ValueError(f"log_density has a non-finite gradient {where}")
    with torch.no_grad():
        single = torch.cat([log_density(x[i : i + 1].detach()).reshape(-1) for i in range(n)])
    tol = 1e-6 if torch_dtype == torch.float64 else 1e-3
    if single.shape != (n,) or not torch.allclose(single, out.detach(), rtol=tol, atol=tol):
        raise ValueError(
            "log_density is not row-independent: f(x)[i] differs from f(x[i:i+1]) (it must not "
            "mix the rows of a batch, e.g. through batch statistics)"
        )


class TorchBridge:
    """Wrap a torch batch log-density as a JAX single-position log-density.

    ``bridge.logdensity_fn`` is ``(d,) float64 -> () float64``, usable under ``jax.jit``,
    ``jax.vmap`` (batched into one torch call) and ``jax.grad`` (gradient from torch).
    ``n_calls`` and ``n_points`` count torch calls and evaluated points (gradient evaluations).
    """

    def __init__(
        self,
        log_density: LogDensity,
        dim: int,
        *,
        torch_dtype: torch.dtype = torch.float64,
        validate: bool = True,
        probe: np.ndarray | None = None,
    ) -> None:
        if torch_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"torch_dtype must be torch.float32 or torch.float64, got {torch_dtype}")
        if validate:
            validate_log_density(log_density, dim, points=probe, torch_dtype=torch_dtype)
        self.log_density = log_density
        self.dim = int(dim)
        self.torch_dtype = torch_dtype
        self.n_calls = 0
        self.n_points = 0
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.logdensity_fn = self._build()

    # -- host side (numpy in, numpy out) -------------------------------------------------
    def _record(self, e: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = e

    def _value_and_grad_host(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x)
        batch = x.shape[:-1]
        flat = np.array(x, dtype=np.float64).reshape(-1, self.dim)  # copy: JAX buffers are read-only
        try:
            xt = torch.from_numpy(flat).to(self.torch_dtype).requires_grad_(True)
            with torch.enable_grad():
                lp = self.log_density(xt)
                (g,) = torch.autograd.grad(lp.sum(), xt)
            val = lp.detach().to(torch.float64).numpy().reshape(batch)
            grad = g.to(torch.float64).numpy().reshape(batch + (self.dim,))
        except Exception as e:  # noqa: BLE001 - reported after the run, see raise_if_failed
            self._record(e)
            val = np.full(batch, np.nan)
            grad = np.full(batch + (self.dim,), np.nan)
        with self._lock:
            self.n_calls += 1
            self.n_points += flat.shape[0]
        return val, grad

    def _value_host(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        batch = x.shape[:-1]
        flat = np.array(x, dtype=np.float64).reshape(-1, self.dim)
        try:
            with torch.no_grad():
                lp = self.log_density(torch.from_numpy(flat).to(self.torch_dtype))
            val = lp.to(torch.float64).numpy().reshape(batch)
        except Exception as e:  # noqa: BLE001
            self._record(e)
            val = np.full(batch, np.nan)
        with self._lock:
            self.n_calls += 1
            self.n_points += flat.shape[0]
        return val

    def raise_if_failed(self) -> None:
        """Re-raise (as BridgeError) the first exception log_density raised inside JAX."""
        if self._error is not None:
            e = self._error
            raise BridgeError(
                f"log_density raised {type(e).__name__}: {e} while blackjax was calling it "
                "(its results were replaced by NaN; the run is invalid)"
            ) from e

    # -- JAX side ---------------------------------------------------------------------------
    def _build(self) -> Callable:
        import jax
        import jax.numpy as jnp

        enable_x64()
        dim = self.dim
        f64 = jnp.float64

        def _check(x):
            if x.shape != (dim,):
                raise ValueError(f"the bridged log-density takes one position of shape ({dim},), got {x.shape}")

        @jax.custom_vjp
        def logdensity(x):
            _check(x)
            return jax.pure_callback(
                self._value_host,
                jax.ShapeDtypeStruct((), f64),
                x.astype(f64),
                vmap_method="broadcast_all",
            )

        def fwd(x):
            _check(x)
            val, grad = jax.pure_callback(
                self._value_and_grad_host,
                (jax.ShapeDtypeStruct((), f64), jax.ShapeDtypeStruct((dim,), f64)),
                x.astype(f64),
                vmap_method="broadcast_all",
            )
            return val, grad

        def bwd(grad, cotangent):
            return (cotangent * grad,)

        logdensity.defvjp(fwd, bwd)
        return logdensity


def torch_to_jax(
    log_density: LogDensity,
    dim: int,
    *,
    torch_dtype: torch.dtype = torch.float64,
    validate: bool = True,
) -> Callable:
    """Return a JAX ``(d,) -> ()`` log-density calling the torch ``log_density`` (see module doc).

    Turns on ``jax_enable_x64`` globally (see :func:`enable_x64`).
    """
    return TorchBridge(log_density, dim, torch_dtype=torch_dtype, validate=validate).logdensity_fn
