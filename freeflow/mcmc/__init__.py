"""Batched p-invariant MCMC in torch (preconditioned HMC / MALA), a verdict check built on it,
and the refinement of a sampler's draws.

* :mod:`freeflow.mcmc.kernel`: :class:`HMCState`, :func:`init`, :func:`build_kernel`, the loop
  :func:`run_chains`, the :func:`preconditioner` from draws.
* :mod:`freeflow.mcmc.check`: :func:`mcmc_shift`, how far the kernel moves q's draws, with
  thresholds calibrated on exact draws (the verdict check of :mod:`freeflow.reliability`).
* :mod:`freeflow.mcmc.refine`: :func:`refine`, many short chains from q's draws, with split
  R-hat and bulk ESS (:func:`split_rhat`, :func:`ess_bulk`).
"""
from .check import (CLEAR_ALARM, GREY_ZONE, MCMC_ALPHA, MIN_SHIFT, MIXED_CORRELATION, MCMCShift, final_options,
                    logp_floor, mcmc_shift, mixing_stop, shift_threshold, start_correlations)
from .kernel import (HMCInfo, HMCState, Preconditioner, build_kernel, init, preconditioner, run_chains,
                     value_and_grad)
from .refine import RefineResult, ess_bulk, refine, refine_rows_per_draw, split_rhat

__all__ = ["HMCState", "HMCInfo", "Preconditioner", "init", "build_kernel", "run_chains", "preconditioner",
           "value_and_grad", "MCMCShift", "mcmc_shift", "shift_threshold", "final_options", "logp_floor", "MCMC_ALPHA",
           "MIN_SHIFT", "MIXED_CORRELATION", "GREY_ZONE", "CLEAR_ALARM", "mixing_stop", "start_correlations",
           "RefineResult", "refine", "split_rhat", "ess_bulk", "refine_rows_per_draw"]
