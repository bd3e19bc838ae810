"""The affine frame x = loc + chol u that the Gaussian stage (``gaussian_stage.py``) fits and
the generator trains in, and log p̃ pulled back to it."""
from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["Frame", "FrameLogDensity"]


class Frame:
    """The affine frame x = loc + chol u of a Gaussian fit (identity until one is set)."""

    def __init__(self, dim: int):
        # in the dtype and on the device current at construction (a placed sampler's scope)
        self.dim, self.dtype, self.device = dim, torch.get_default_dtype(), torch.get_default_device()
        self.set(torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64), identity=True)

    def set(self, loc: Tensor, chol: Tensor, *, identity: bool = False) -> None:
        self.loc64 = loc.to(device=self.device, dtype=torch.float64)
        self.chol64 = chol.to(device=self.device, dtype=torch.float64)
        self.loc, self.chol = self.loc64.to(self.dtype), self.chol64.to(self.dtype)
        self.log_det = float(self.chol64.diagonal().log().sum())
        self.identity = identity

    def to_x(self, u: Tensor) -> Tensor:
        if self.identity:
            return u
        return (self.loc.to(u.dtype) + u @ self.chol.to(u.dtype).T)

    def to_u(self, x: Tensor) -> Tensor:
        if self.identity:
            return x
        diff = (x - self.loc.to(x.dtype)).T
        return torch.linalg.solve_triangular(self.chol.to(x.dtype), diff, upper=False).T

    def pull_back(self, log_density) -> "FrameLogDensity":
        """log p̃_u(u) = log p̃(loc + chol u) + log|det chol| (differentiable in u); follows
        later :meth:`set` calls."""
        return FrameLogDensity(self, log_density)

    def state_dict(self) -> dict:
        return {"loc": self.loc64.clone(), "chol": self.chol64.clone(), "identity": self.identity}

    def load_state_dict(self, sd: dict) -> None:
        self.set(sd["loc"], sd["chol"], identity=bool(sd["identity"]))


class FrameLogDensity:
    """log p̃ pulled back to the frame's coordinates u (identity while the frame is)."""

    def __init__(self, frame: Frame, log_density):
        self.frame, self.log_density = frame, log_density

    def __call__(self, u: Tensor) -> Tensor:
        if self.frame.identity:
            return self.log_density(u)
        return self.log_density(self.frame.to_x(u)) + self.frame.log_det
