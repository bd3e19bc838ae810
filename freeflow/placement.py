"""Where a sampler's tensors live: its device and its floating dtype.

``OneStepSampler(..., device="cuda", dtype=torch.float64)`` (and ``DataFlow``, ``ff.sample``)
resolve both arguments here, before anything is built:

* ``device``: ``None`` (the CPU), a ``torch.device`` or a string torch parses (``"cpu"``,
  ``"cuda"``, ``"cuda:1"``, ``"mps"``). ``"cuda"`` without a GPU, ``"cuda:7"`` on a machine with
  fewer GPUs, and a string that is not a device are refused with a ValueError naming the argument.
* ``dtype``: ``None`` (torch's default dtype at construction, float32 unless changed),
  ``torch.float32`` / ``torch.float64``, or the strings ``"float32"`` / ``"float64"``
  (``"torch.float64"`` too). ``"float"`` and ``"double"`` are refused: ``"float"`` means float32 to
  torch and float64 to NumPy. Integer and complex dtypes are refused, and so is half precision
  (the log-sum-exps and kernel sums of the estimators are not reliable in 16 bits).

Every public method of a placed object runs in its :meth:`Placement.scope`: torch's default
dtype is the sampler's, and off the CPU factory calls without a ``device=`` allocate on the
sampler's device (``with torch.device(...)``). Random streams come from
:func:`noise_generator`, a ``torch.Generator`` on the scope's device, so noise is drawn where the
network runs. On the CPU in float32 the scope changes nothing: the same streams, the same numbers.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch

__all__ = ["Placement", "resolve_device", "resolve_dtype", "noise_generator", "check_placed_output",
           "placed", "checkpoint_placement", "resumed_rng_state", "FLOAT_DTYPES"]

#: the dtypes accepted by ``dtype=``, by name
FLOAT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine (ValueError naming ``name``)."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{name}={device!r} is not a device (e.g. 'cpu', 'cuda', 'cuda:1'): {e}") from None
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise TypeError(f"{name} must be a string such as 'cpu' or 'cuda:0', or a torch.device, "
                        f"got {type(device).__name__}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r}: CUDA is not available on this machine "
                             "(torch.cuda.is_available() is False); use device='cpu'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{name}={device!r}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
        if dev.index is None:  # name the concrete device, so that tensors' devices compare equal
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"{name}={device!r}: MPS is not available on this machine; use device='cpu'")
    elif dev.type != "cpu":
        raise ValueError(f"{name}={device!r}: only 'cpu', 'cuda[:i]' and 'mps' devices are supported")
    return dev


def resolve_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """``dtype`` as torch.float32 or torch.float64 (ValueError/TypeError naming ``name``)."""
    if dtype is None:
        return torch.get_default_dtype()
    if isinstance(dtype, str):
        key = dtype[len("torch."):] if dtype.startswith("torch.") else dtype
        if key not in FLOAT_DTYPES:
            raise ValueError(f"{name}={dtype!r}: the names accepted are 'float32' and 'float64' "
                             "('float' is float32 to torch and float64 to NumPy), or pass torch.float32 / "
                             "torch.float64")
        return FLOAT_DTYPES[key]
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be torch.float32, torch.float64 or their names, got {type(dtype).__name__}")
    if not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating dtype (torch.float32 or torch.float64), got {dtype}")
    if dtype not in FLOAT_DTYPES.values():
        raise ValueError(f"{name}={dtype}: only torch.float32 and torch.float64 are supported (half precision "
                         "is too coarse for the estimators' log-sum-exps)")
    return dtype


def noise_generator(seed: int) -> torch.Generator:
    """A seeded ``torch.Generator`` on the current default device (the scope's)."""
    return torch.Generator(device=torch.get_default_device()).manual_seed(int(seed))


@dataclass(frozen=True)
class Placement:
    """A device and a floating dtype (see the module docstring)."""

    device: torch.device
    dtype: torch.dtype

    @classmethod
    def resolve(cls, device=None, dtype=None) -> "Placement":
        return cls(resolve_device(device), resolve_dtype(dtype))

    @contextlib.contextmanager
    def scope(self):
        """Default dtype (and off the CPU, default device) set to this placement inside."""
        old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            if torch.get_default_device() == self.device:  # the CPU, or a scope already open
                yield self
            else:
                with self.device:
                    yield self
        finally:
            torch.set_default_dtype(old)

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def describe(self) -> dict:
        return {"device": str(self.device), "dtype": str(self.dtype).replace("torch.", "")}


def checkpoint_placement(ck: dict, map_location, dtype) -> tuple[torch.device, torch.dtype]:
    """The device and dtype to rebuild a checkpoint on: the arguments (``map_location`` as
    torch.load names it), else the saved ones (the CPU where the saved device is not on this
    machine; float32 for checkpoints written before placements existed)."""
    saved = ck.get("placement") or {"device": "cpu", "dtype": "float32"}
    if map_location is not None:
        device = resolve_device(map_location, "map_location")
    else:
        try:
            device = resolve_device(saved["device"])
        except ValueError:
            device = torch.device("cpu")
    return device, resolve_dtype(saved["dtype"] if dtype is None else dtype)


def resumed_rng_state(ck: dict, trainer_state: dict, placement: "Placement") -> dict:
    """The trainer's saved state, its noise stream replaced by a fresh one (seeded from the
    seed and the step) where the checkpoint comes from another kind of device: the states of
    CPU and CUDA generators do not carry over."""
    saved = torch.device((ck.get("placement") or {"device": "cpu"})["device"])
    if saved.type == placement.device.type:
        return trainer_state
    seed = 1_000_003 * int(ck.get("seed", 0)) + int(trainer_state["step"])
    return {**trainer_state, "rng": placement.generator(seed).get_state()}


def placed(method):
    """Run a method of an object with a ``placement`` attribute inside its scope."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.placement.scope():
            return method(self, *args, **kwargs)
    return wrapper


def check_placed_output(out, x: torch.Tensor, name: str) -> None:
    """``name``'s value at x is on x's device, and in x's dtype (float64 at float32 input is
    allowed: it is cast down, as before devices existed); else a ValueError naming ``name``."""
    if not isinstance(out, torch.Tensor):
        return
    if out.device != x.device:
        raise ValueError(f"{name} returned a tensor on {out.device} for input on {x.device}: a sampler "
                         f"placed on {x.device} calls {name} there, so it must compute on its input's device "
                         "(move its constants/data with .to(x.device))")
    if out.dtype != x.dtype and not (x.dtype == torch.float32 and out.dtype == torch.float64):
        raise ValueError(f"{name} returned {out.dtype} for {x.dtype} input: a sampler with dtype={x.dtype} "
                         f"needs {name} in that dtype (build its constants with dtype=x.dtype)")
