"""Run docs/tutorial-posterior.md: every ```python block, in order, in one namespace.

    python benchmarks/tutorial_posterior.py --update-doc   # -> results/tutorial_posterior.json,
                                                           #    docs/figures/tutorial_*.png, the
                                                           #    doc's output blocks rewritten
    python benchmarks/tutorial_posterior.py --quick --out /tmp/t.json --figures /tmp/figs

Per block: its stdout (with ``--update-doc`` written into the ```text block that follows it),
its wall time, the warnings it raised, and the figures it made: a block that makes figures
names them, in order, in comments ``# figure: <file>.png``; they are saved to ``--figures``
(default docs/figures).  ``--quick`` is the test mode (tests/test_tutorial_posterior.py):
``ff.sample`` gets short, unchecked fits (``steps=30, batch_size=128, check=False``; a warm start
one round of 10 steps)
unless a block sets them, NUTS runs 2 chains of 60 + 60 (cached in .cache/freeflow/nuts-tests),
and a million draws become 20000.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine  # noqa: E402  (sets sys.path to the repository)

import freeflow as ff  # noqa: E402
from freeflow.io import atomic_write_json, atomic_write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "tutorial-posterior.md"
FIGURES = ROOT / "docs" / "figures"
BLOCK = re.compile(r"```python\n(.*?)```\n(\s*```text\n.*?```\n)?", re.S)
QUICK_TEXT = [("1_000_000", "20_000"), ("100_000", "20_000")]
QUICK_CACHE = ROOT / ".cache" / "freeflow" / "nuts-tests"


def code_blocks(text: str) -> list[re.Match]:
    return list(BLOCK.finditer(text))


def _quick_text(code: str) -> str:
    for old, new in QUICK_TEXT:
        code = code.replace(old, new)
    return code


@contextlib.contextmanager
def quick_fits():
    """Short fits and short NUTS for the test mode (the blocks' own options win)."""
    reference = ff.reference  # freeflow.compare.reference: nuts_inference_data looks nuts up there

    real_sample, real_nuts = ff.sample, reference.nuts

    def sample(*args, **kwargs):
        if kwargs.get("init") is not None:
            kwargs.setdefault("round_steps", 10)
            kwargs.setdefault("max_steps", 10)
        else:
            kwargs.setdefault("steps", 30)
            kwargs.setdefault("batch_size", 128)
            kwargs.setdefault("check", False)
        return real_sample(*args, **kwargs)

    def nuts(*args, **kwargs):
        kwargs.update(chains=2, warmup=min(kwargs.get("warmup", 60), 60), draws=min(kwargs.get("draws", 60), 60))
        kwargs.setdefault("cache_dir", str(QUICK_CACHE))  # compiling NUTS is most of its cost here
        kwargs.setdefault("cache_key", "tutorial-posterior-quick")
        return real_nuts(*args, **kwargs)

    ff.sample, reference.nuts = sample, nuts
    try:
        yield
    finally:
        ff.sample, reference.nuts = real_sample, real_nuts


def run_blocks(text: str, *, quick: bool, figures: Path) -> tuple[list[dict], dict]:
    """(one record per block, the namespace the blocks ran in)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace: dict = {"__name__": "tutorial"}
    records = []
    with quick_fits() if quick else contextlib.nullcontext():
        for i, match in enumerate(code_blocks(text), start=1):
            code = _quick_text(match.group(1)) if quick else match.group(1)
            names = re.findall(r"#\s*figure:\s*(\S+)", code)
            before = set(plt.get_fignums())
            out = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                exec(compile(code, f"<tutorial-posterior.md block {i}>", "exec"), namespace)  # noqa: S102
            seconds = time.perf_counter() - t0
            made = [n for n in plt.get_fignums() if n not in before]
            if len(made) != len(names):
                raise RuntimeError(f"block {i} made {len(made)} figure(s) but names {len(names)}: {names}")
            for num, name in zip(made, names):
                figures.mkdir(parents=True, exist_ok=True)
                plt.figure(num).savefig(figures / name, format="png", dpi=110, bbox_inches="tight")
                plt.close(num)
            shown = [f"{w.category.__name__}: {w.message}" for w in caught
                     if issubclass(w.category, (ff.ReliabilityWarning, RuntimeWarning))]
            records.append({"block": i, "seconds": seconds, "stdout": out.getvalue(), "figures": names,
                            "warnings": shown[:10]})
            print(f"block {i}: {seconds:.1f} s{', figures ' + ', '.join(names) if names else ''}", file=sys.stderr)
    return records, namespace


def update_doc(text: str, records: list[dict]) -> str:
    """The ```text block after each python block replaced by that block's stdout."""
    pieces, last = [], 0
    for match, rec in zip(code_blocks(text), records):
        pieces.append(text[last:match.start()])
        pieces.append(f"```python\n{match.group(1)}```\n")
        if rec["stdout"].strip():
            body = rec["stdout"] if rec["stdout"].endswith("\n") else rec["stdout"] + "\n"
            pieces.append(f"\n```text\n{body}```\n")
        last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


def main(argv=None) -> tuple[list[dict], dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short fits and NUTS (the test mode)")
    p.add_argument("--update-doc", action="store_true", help="write the outputs into the doc's text blocks")
    p.add_argument("--doc", default=str(DOC))
    p.add_argument("--figures", default=str(FIGURES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "tutorial_posterior.json"))
    a = p.parse_args(argv)
    if a.quick and a.update_doc:
        p.error("--update-doc writes the full run's outputs; not with --quick")
    torch.set_num_threads(a.threads)
    text = Path(a.doc).read_text()
    t0 = time.perf_counter()
    records, namespace = run_blocks(text, quick=a.quick, figures=Path(a.figures))
    result = {"doc": str(Path(a.doc).relative_to(ROOT)) if Path(a.doc).is_relative_to(ROOT) else a.doc,
              "quick": a.quick, "threads": a.threads, "wall_s": time.perf_counter() - t0, "blocks": records,
              "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)]),
              "machine": machine()}
    atomic_write_json(result, Path(a.out))
    if a.update_doc:
        atomic_write_text(update_doc(text, records), Path(a.doc))
    print(f"wrote {a.out} ({result['wall_s']:.0f} s)", file=sys.stderr)
    return records, namespace


if __name__ == "__main__":
    main()
