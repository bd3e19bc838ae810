"""Training entry point of the image pipeline, on one process or many (torchrun, DDP).

    python -m freeflow.images.train --config digits --out runs/digits              # one process
    torchrun --nproc_per_node 2 -m freeflow.images.train --config digits --out runs/d2
    torchrun --nproc_per_node 8 -m freeflow.images.train --config configs/imagenet_L2.toml \\
        --latents latents/ --out runs/L2

The project's one :class:`~freeflow.train.Trainer` drives a DiT (:mod:`.dit`) with the image
drift (:mod:`.drift`); under torchrun the generator is wrapped in DistributedDataParallel
(backend from the config: nccl on GPU, gloo on CPU) and every rank computes its slice of the
same global step, so W processes reproduce one process with the same global batch.  Rank 0
alone writes the progress bar, OUT/log.jsonl and OUT/checkpoint.pt (a plain dict, written
atomically, so a dying rank — which ends the job — leaves the last checkpoint valid).
``--resume`` continues OUT/checkpoint.pt exactly; a resume whose model/data/drift settings
differ from the checkpoint's is refused, naming the keys, and nothing is overwritten.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import atomic_torch_save, atomic_write_text, load_checkpoint
from ..train import History, TrainConfig, Trainer, standard_callbacks
from ..train.trainer import Callback
from ..validation import USER_ERRORS
from .config import ImageConfig, config_from_dict, config_to_dict, load_config

__all__ = ["ImageRun", "TrainedRun", "load_run", "build_generator", "load_data", "main", "FORMAT"]

FORMAT = "freeflow.images.run/1"
#: settings a resumed run must share with its checkpoint (train.* may change, e.g. steps)
FROZEN_SECTIONS = ("model", "data", "drift")


def build_generator(cfg: ImageConfig):
    from .dit import dit

    m = cfg.model
    return dit(m.name, input_size=m.input_size, in_channels=m.in_channels, num_classes=m.num_classes,
               norm=m.norm, qk_norm=m.qk_norm, mlp=m.mlp, guidance_embed=m.guidance_embed,
               activation_checkpointing=m.activation_checkpointing)


def load_data(cfg: ImageConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(images or latents (N, C, H, W), labels (N,)) of the training set."""
    if cfg.data.source == "digits":
        from .data import load_digits_images

        x, y = load_digits_images("train", seed=0)
    else:
        from .data import LatentShards

        x, y = LatentShards(cfg.data.latents).tensors()
    shape = (cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"data have shape {tuple(x.shape[1:])} per item but the model expects {shape} "
                         "(model.in_channels, model.input_size)")
    if int(y.max()) >= cfg.model.num_classes:
        raise ValueError(f"data have label {int(y.max())} >= model.num_classes={cfg.model.num_classes}")
    return x.float(), y.long()


def _build_features(cfg: ImageConfig):
    from .features import build_feature_map

    d = cfg.drift
    if d.features == "encoder":
        return build_feature_map("encoder", path=d.encoder_path)
    return build_feature_map("multiscale", patch_sizes=tuple(d.patch_sizes), pool_sizes=tuple(d.pool_sizes),
                             stat_sizes=tuple(d.stat_sizes), whole=d.whole)


class _RankFault(Callback):
    """Test hook: FREEFLOW_FAIL_RANK=r and FREEFLOW_FAIL_AT_STEP=k make rank r die (os._exit)
    after step k, to check that a dying rank ends the job with the last checkpoint valid."""

    def __init__(self, rank: int):
        self.rank = rank
        self.at = int(os.environ.get("FREEFLOW_FAIL_AT_STEP", "-1"))
        self.who = int(os.environ.get("FREEFLOW_FAIL_RANK", "-1"))

    def on_step_end(self, trainer, state, info):
        if self.rank == self.who and state.step == self.at:
            os._exit(17)


class ImageRun:
    """Everything one process needs: config, generator (DDP-wrapped when distributed), bank,
    drift and trainer state.  ``ImageRun(cfg).fit(out)``; ``ImageRun.load(out)`` for sampling."""

    def __init__(self, cfg: ImageConfig, *, rank: int = 0, world: int = 1, device: str = "cpu",
                 data: tuple | None = None) -> None:
        from .data import ClassMemoryBank
        from .drift import ImageDrift

        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        t = cfg.train
        torch.manual_seed(t.seed)  # same initial parameters on every rank
        self.model = build_generator(cfg).to(device)
        self.generator = self.model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.generator = DDP(self.model, device_ids=[torch.device(device).index] if device != "cpu" else None)
        shape = (cfg.model.in_channels, cfg.model.input_size, cfg.model.input_size)
        self.bank = None
        if data is not None or cfg.data.source == "digits" or cfg.data.latents:
            x, y = data if data is not None else load_data(cfg)
            self.bank = ClassMemoryBank(cfg.model.num_classes, cfg.data.bank_capacity, shape)
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(t.seed))
            self.bank.fill_from(x[perm], y[perm])
        d = cfg.drift
        self.drift = ImageDrift(
            features=_build_features(cfg).to(device), bank=self.bank, num_classes=cfg.model.num_classes,
            image_shape=shape, classes_per_step=d.classes_per_step, gen_per_class=d.gen_per_class,
            real_per_class=d.real_per_class, uncond_reals=d.uncond_reals, velocity=d.velocity,
            rel_eps=tuple(d.rel_eps), num_iters=d.num_iters, temperature=tuple(d.temperature),
            guidance=d.guidance, alpha_max=d.alpha_max, alpha_power=d.alpha_power,
            null_fraction=d.null_fraction, autocast=None if t.autocast == "none" else t.autocast,
            rank=rank, world=world, device=device)
        tc = TrainConfig(lr=t.lr, lr_schedule=t.lr_schedule, warmup_steps=t.warmup_steps, step_size=t.step_size,
                         grad_clip=t.grad_clip, ema_decay=t.ema_decay, betas=tuple(t.betas),
                         weight_decay=t.weight_decay, step=t.step, jko_tau=t.jko_tau, jko_inner=t.jko_inner)
        self.trainer = Trainer(self.generator, self.drift, tc, seed=t.seed)
        self.state = self.trainer.init()
        self.history = History()

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"format": FORMAT, "config": config_to_dict(self.cfg), "trainer": self.trainer.state_dict(self.state),
                "history": self.history.rows()}

    def save(self, path) -> Path:
        return atomic_torch_save(self.state_dict(), path)

    @staticmethod
    def read_checkpoint(path) -> dict:
        ck = load_checkpoint(path)
        if not isinstance(ck, dict) or ck.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a freeflow image-run checkpoint")
        return ck

    # -- training ------------------------------------------------------------------------------
    def fit(self, out, *, resume: bool = False, progress: bool = True) -> list:
        out = Path(out)
        ck_path = out / "checkpoint.pt"
        if ck_path.exists():
            if not resume:
                raise FileExistsError(f"{str(ck_path)!r} exists; pass --resume to continue it, or another --out")
            ck = self.read_checkpoint(ck_path)
            saved, now = ck["config"], config_to_dict(self.cfg)
            diff = [f"{s}.{k}" for s in FROZEN_SECTIONS for k in now[s] if saved.get(s, {}).get(k) != now[s][k]]
            if diff:
                raise ValueError(f"cannot resume {str(ck_path)!r}: settings differ from the checkpoint's: "
                                 f"{', '.join(diff)} (nothing was overwritten)")
            self.trainer.load_state_dict(self.state, ck["trainer"])
            self.history = History(ck.get("history", []))
        main = self.rank == 0
        if main:
            out.mkdir(parents=True, exist_ok=True)
            import json
            atomic_write_text(json.dumps(config_to_dict(self.cfg), indent=2) + "\n", out / "config.json")
        cbs = standard_callbacks(progress=progress and main, log=out / "log.jsonl" if main else None,
                                 checkpoint=ck_path if main else None, save=self.save,
                                 checkpoint_every=self.cfg.train.checkpoint_every,
                                 progress_keys=("loss", "grad_norm"), extra=[_RankFault(self.rank)])
        hist = self.trainer.fit(self.state, self.cfg.train.steps, callbacks=cbs)
        self.history.extend(hist)
        if main:
            self.save(ck_path)
        return hist


@dataclass
class TrainedRun:
    """A finished (or checkpointed) run, for sampling: its config, EMA generator and step."""

    config: ImageConfig
    generator: torch.nn.Module
    steps: int


def load_run(run_dir, *, device: str = "cpu", ema: bool = True) -> TrainedRun:
    """Read RUN_DIR/checkpoint.pt; the EMA weights (or the raw ones) in eval mode."""
    path = Path(run_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no run checkpoint at {str(path)!r}")
    ck = ImageRun.read_checkpoint(path)
    cfg = config_from_dict(ck["config"], source=str(path))
    net = build_generator(cfg).to(device)
    net.load_state_dict(ck["trainer"]["ema"]["module"] if ema else ck["trainer"]["generator"])
    return TrainedRun(cfg, net.eval().requires_grad_(False), int(ck["trainer"]["step"]))


def _distributed(cfg: ImageConfig) -> tuple[int, int, str]:
    """(rank, world, device); initialises torch.distributed under torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, "cuda" if torch.cuda.is_available() else "cpu"
    import torch.distributed as dist

    backend = cfg.train.backend
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local}" if backend == "nccl" else "cpu"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=cfg.train.timeout_s))
    return dist.get_rank(), world, device


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="freeflow images train", description=__doc__.split("\n\n")[0])
    add_train_arguments(p)
    return p


def add_train_arguments(p) -> None:
    p.add_argument("--config", required=True, help="a TOML file, or a shipped config's name (digits, imagenet_B2, ...)")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, log.jsonl, config.json)")
    p.add_argument("--latents", help="latent folder (sets data.source = 'latents', data.latents)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (TOML syntax for the value)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")


def _overrides(args) -> dict:
    import tomllib

    out = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set {item!r} must be SECTION.KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            out[k.strip()] = v
    if args.latents:
        out["data.source"], out["data.latents"] = "latents", args.latents
    return out


def run(args) -> int:
    cfg = load_config(args.config, _overrides(args))
    rank, world, device = _distributed(cfg)
    try:
        image_run = ImageRun(cfg, rank=rank, world=world, device=device)
        image_run.fit(args.out, resume=args.resume, progress=not args.no_progress)
        if image_run.state.failure is not None:  # a step kept failing: stopped at the last good state
            print(f"freeflow images train: error: {image_run.state.failure} (--resume continues it)",
                  file=sys.stderr)
            return 2
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (*USER_ERRORS, FileExistsError) as e:
        if os.environ.get("FREEFLOW_DEBUG"):
            raise
        print(f"freeflow images train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
