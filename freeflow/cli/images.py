"""``freeflow images {encode,train,sample,eval}``: the image pipeline from the command line.

    freeflow images encode --images /data/imagenet/train --vae /models/sd-vae-ft-ema --out latents/
    freeflow images train --config digits --out runs/digits          # torchrun: python -m freeflow.images.train
    freeflow images sample --run runs/digits --classes 3,7 --guidance 1.5 --n 16 --out grid.png
    freeflow images eval --run runs/digits --n 2000
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["add_images_subcommand"]


def add_images_subcommand(sub) -> None:
    p = sub.add_parser("images", help="image pipeline: encode, train, sample, eval")
    isub = p.add_subparsers(dest="images_command", required=True)

    e = isub.add_parser("encode", help="encode a class-folder image set to VAE latent shards (once)")
    e.add_argument("--images", required=True, help="root/<class>/<image files>")
    e.add_argument("--vae", required=True, help="local diffusers AutoencoderKL folder (e.g. sd-vae-ft-ema)")
    e.add_argument("--out", required=True, help="latent folder (shards + index.json)")
    e.add_argument("--image-size", type=int, default=256)
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--shard-size", type=int, default=1024, help="latents per shard file")
    e.add_argument("--resume", action="store_true", help="continue a killed encode")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_encode)

    from ..images.train import add_train_arguments

    t = isub.add_parser("train", help="train a one-step generator (one process; torchrun for DDP)")
    add_train_arguments(t)
    t.set_defaults(func=_train)

    s = isub.add_parser("sample", help="one-step samples of a run: a PNG grid or an .npz")
    s.add_argument("--run", required=True)
    s.add_argument("--classes", default="all", help="comma-separated class indices, 'all' or 'null'")
    s.add_argument("--n", type=int, default=16, help="samples per class")
    s.add_argument("--guidance", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--vae", help="VAE folder to decode latents (default: the run's data.vae)")
    s.add_argument("--out", required=True, help="x.png (grid) or x.npz (images, labels)")
    s.set_defaults(func=_sample)

    v = isub.add_parser("eval", help="metrics of a run (digits: accuracy, Fréchet distance and its floor)")
    v.add_argument("--run", required=True)
    v.add_argument("--n", type=int, default=None,
                   help="samples per scale (default: 1000 for digits, 50000 for latent runs)")
    v.add_argument("--guidance", type=float, action="append", help="scale(s) to evaluate (default 1.0)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--inception", help="torch-fidelity Inception weights file (latent/ImageNet runs)")
    v.add_argument("--reference", help="folder of reference images for FID (latent/ImageNet runs)")
    v.add_argument("--vae", help="VAE folder to decode latents (default: the run's data.vae)")
    v.add_argument("--out", help="write the metrics here (.json)")
    v.set_defaults(func=_eval)


def _encode(args) -> int:
    from ..images.latents import encode_folder

    encode_folder(args.images, args.vae, args.out, image_size=args.image_size, batch_size=args.batch_size,
                  shard_size=args.shard_size, progress=not args.no_progress, resume=args.resume)
    print(f"latents written to {args.out}")
    return 0


def _train(args) -> int:
    from ..images.train import run

    return run(args)


def _decode_if_latent(run, x, vae_path):
    if run.config.data.source != "latents":
        return x, False
    path = vae_path or run.config.data.vae
    if not path:
        return x, True
    from ..images.latents import decode, load_vae

    return decode(load_vae(path), x), False


def _sample(args) -> int:
    import torch

    from ..images.sample import generate, parse_classes, save_grid, save_npz
    from ..images.train import load_run
    from ..validation import check_positive_int

    check_positive_int(args.n, "--n")
    run = load_run(args.run)
    m = run.config.model
    classes = parse_classes(args.classes, m.num_classes)
    labels = torch.tensor(classes).repeat_interleave(args.n)
    x = generate(run.generator, labels, guidance=args.guidance, seed=args.seed,
                 shape=(m.in_channels, m.input_size, m.input_size))
    x, is_latent = _decode_if_latent(run, x, args.vae)
    out = Path(args.out)
    if out.suffix == ".npz":
        save_npz(out, x, labels.numpy(), latents=is_latent)
    elif out.suffix == ".png":
        if is_latent:
            raise ValueError("a PNG of a latent run needs --vae (or data.vae in its config) to decode")
        save_grid(x, out, nrow=args.n, upscale=max(1, 64 // m.input_size))
    else:
        raise ValueError(f"--out must end in .png or .npz, got {args.out!r}")
    print(f"{len(x)} samples ({run.steps} training steps, guidance {args.guidance}) -> {out}")
    return 0


def _eval(args) -> int:
    from ..images.train import load_run
    from ..io import atomic_write_json

    run = load_run(args.run)
    scales = args.guidance or [1.0]
    if run.config.data.source == "digits":
        from ..images.metrics import DigitsEvaluator
        from ..images.sample import evaluate_digits

        ev = DigitsEvaluator.build(seed=0)
        n = args.n or 1000
        res = {"run": str(args.run), "steps": run.steps,
               "metrics": [evaluate_digits(run.generator, n=n, guidance=g, seed=args.seed, evaluator=ev)
                           for g in scales]}
    else:
        if not args.inception or not args.reference:
            raise ValueError("a latent run is evaluated with torch-fidelity: pass --inception (weights file) "
                             "and --reference (a folder of real images)")
        import tempfile

        from ..images.metrics import torch_fidelity_metrics

        if not Path(args.inception).is_file():
            raise FileNotFoundError(f"--inception {args.inception!r}: no such file (nothing is downloaded)")
        if not (args.vae or run.config.data.vae):
            raise ValueError("FID needs decoded images: pass --vae (or set data.vae in the config)")
        n = args.n or 50_000
        res = {"run": str(args.run), "steps": run.steps, "metrics": []}
        for g in scales:
            with tempfile.TemporaryDirectory(prefix="freeflow-eval-") as tmp:
                _write_png_folder(run, n, g, args.seed, args.vae, Path(tmp))   # chunked: bounded memory
                res["metrics"].append({"guidance": g, **torch_fidelity_metrics(tmp, args.reference,
                                                                               inception_weights=args.inception)})
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        atomic_write_json(res, args.out)
    return 0


def _write_png_folder(run, n: int, guidance: float, seed: int, vae_path, folder: Path, chunk: int = 500) -> None:
    """n class-balanced one-step samples, decoded, as PNG files in ``folder`` (chunk by chunk)."""
    import numpy as np
    import torch
    from PIL import Image

    from ..images.data import to_uint8
    from ..images.sample import generate

    m = run.config.model
    labels = torch.arange(n) % m.num_classes
    for start in range(0, n, chunk):
        lab = labels[start:start + chunk]
        x = generate(run.generator, lab, guidance=guidance, seed=seed * 1_000_003 + start,
                     shape=(m.in_channels, m.input_size, m.input_size))
        x, _ = _decode_if_latent(run, x, vae_path)
        arr = to_uint8(x).permute(0, 2, 3, 1).numpy()
        for i, a in enumerate(arr):
            Image.fromarray(a[..., 0] if a.shape[-1] == 1 else np.ascontiguousarray(a)).save(
                folder / f"{start + i:06d}.png")
