"""A synthetic temporal action localization benchmark, hard in the way ASL cares about.

Every class ``c`` owns three phase prototypes (start, core, end). An action instance
plays them in order; in its start and end phases the class pattern fades in from (and
back out to) either the background or one of a few "confuser" patterns shared by all
classes, so transitional frames carry little class evidence. Background is structured:
a slow AR(1) drift, a fast AR(1) component, white noise and occasional bursts of the
confuser patterns. Actions range from a few steps to hundreds and some overlap.

Layout written to ``root`` (``docs/data.md`` §2 and §6)::

    root/annotations.json            subsets training / validation / test, fps 1.0
    root/features/<video_id>.npy     (T, D) float32, feature i centred at i + 0.5 s

With feature stride 1 and window 1 the grid maps to seconds as ``grid = t - 0.5``.
Instance segments are ``[start, end]`` in integer seconds covering features
``start .. end - 1``; each instance also records its ``phases`` in seconds.

Usage::

    python -m asl_tal.data.synthetic --out data/synthetic --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from filelock import FileLock
from omegaconf import OmegaConf

from asl_tal.settings import FRACTION, POSITIVE, SEED, at_least, settings_from

log = logging.getLogger(__name__)

GENERATOR_VERSION = "asl-tal-synthetic-1"
PHASES = ("start", "core", "end")
SUBSETS = ("training", "validation", "test")


@dataclass(frozen=True)
class SyntheticConfig:
    """Generator parameters (all recorded in the annotation JSON): the ``dataset.generator``
    block of ``conf/dataset/synthetic.yaml``, which holds their values (:func:`shipped_config`).

    Attributes:
        seed: seed of every random draw; same parameters and seed, same bytes.
        num_videos: videos in total, split 4:1:1 into training / validation / test.
        num_classes: action classes ``C``.
        dim: feature width ``D``.
        min_length, max_length: video length range in steps (uniform).
        min_action, max_action: instance length range in steps (log-uniform).
        max_actions: most instances per video (uniform in ``1..max_actions``).
        overlap_prob: chance that a new instance is placed over an existing one.
        num_confusers: patterns shared by all classes (transitions, distractor bursts).
        signal: amplitude of the class patterns (per-dimension RMS).
        confuser: amplitude of the confuser patterns (per-dimension RMS).
        drift_std, drift_phi: stationary std and coefficient of the slow AR(1) drift.
        fast_std, fast_phi: stationary std and coefficient of the fast AR(1) noise.
        white_std: std of the white noise.
        fade_floor: class weight at the outer edge of a start or end phase.
        burst_rate: expected distractor bursts per 100 steps.
    """

    seed: Annotated[int, SEED]
    num_videos: Annotated[int, at_least(3)]
    num_classes: Annotated[int, at_least(2)]
    dim: Annotated[int, POSITIVE]
    min_length: int
    max_length: int
    min_action: Annotated[int, at_least(3)]
    max_action: int
    max_actions: Annotated[int, POSITIVE]
    overlap_prob: Annotated[float, FRACTION]
    num_confusers: Annotated[int, POSITIVE]
    signal: float
    confuser: float
    drift_std: float
    drift_phi: float
    fast_std: float
    fast_phi: float
    white_std: float
    fade_floor: Annotated[float, FRACTION]
    burst_rate: float

    @staticmethod
    def config_rules(values: Mapping[str, Any], key: Callable[[str], str]) -> list[str]:
        """Room for two of the shortest actions in the shortest video, and ranges whose
        upper end is not below their lower one."""
        found = []
        if values["min_length"] < 2 * values["min_action"]:
            found.append(
                f"{key('min_length')}: {values['min_length']} is below twice "
                f"{key('min_action')} = {values['min_action']}"
            )
        for low, high in (("min_length", "max_length"), ("min_action", "max_action")):
            if values[high] < values[low]:
                found.append(f"{key(high)}: {values[high]} is below {key(low)} = {values[low]}")
        return found


@dataclass(frozen=True)
class Instance:
    """One action instance in steps: phases are ``[start, b)``, ``[b, c)``, ``[c, end)``."""

    label: int
    start: int
    b: int
    c: int
    end: int
    confuser: int
    fade_in_confuser: bool
    fade_out_confuser: bool


def _unit_patterns(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``(n, dim)`` random directions scaled to per-dimension RMS 1."""
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(dim)


def _ar1(rng: np.random.Generator, steps: int, dim: int, phi: float, std: float) -> np.ndarray:
    """``(steps, dim)`` stationary AR(1) noise with coefficient ``phi`` and std ``std``."""
    innovations = rng.standard_normal((steps, dim)) * std * np.sqrt(1.0 - phi**2)
    out = np.empty((steps, dim))
    out[0] = rng.standard_normal(dim) * std
    for t in range(1, steps):
        out[t] = phi * out[t - 1] + innovations[t]
    return out


def _split_phases(rng: np.random.Generator, start: int, length: int) -> tuple[int, int]:
    """Boundaries ``b, c`` of the core phase: start and end phases take 15–30 % each."""
    n_start = max(1, round(length * rng.uniform(0.15, 0.3)))
    n_end = max(1, round(length * rng.uniform(0.15, 0.3)))
    n_start = min(n_start, length - 2)
    n_end = min(n_end, length - 1 - n_start)
    return start + n_start, start + length - n_end


def _place_instances(rng: np.random.Generator, cfg: SyntheticConfig, steps: int) -> list[Instance]:
    """Sample instances: disjoint, except that some are deliberately laid over another."""
    max_action = min(cfg.max_action, int(0.8 * steps))
    count = int(rng.integers(1, cfg.max_actions + 1))
    placed: list[Instance] = []
    for _ in range(20 * count):
        if len(placed) == count:
            break
        length = int(np.round(np.exp(rng.uniform(np.log(cfg.min_action), np.log(max_action)))))
        overlap = bool(placed) and rng.random() < cfg.overlap_prob
        if overlap:
            host = placed[int(rng.integers(len(placed)))]
            start = int(rng.integers(host.start, host.end))
        else:
            start = int(rng.integers(0, steps - length + 1))
        end = start + length
        if end > steps:
            continue
        hits = [p for p in placed if p.start < end and start < p.end]
        if overlap and len(hits) != 1:
            continue
        if not overlap and hits:
            continue
        taken = {p.label for p in hits}
        label = int(rng.choice([k for k in range(cfg.num_classes) if k not in taken]))
        b, c = _split_phases(rng, start, length)
        placed.append(
            Instance(
                label=label,
                start=start,
                b=b,
                c=c,
                end=end,
                confuser=int(rng.integers(cfg.num_confusers)),
                fade_in_confuser=bool(rng.random() < 0.5),
                fade_out_confuser=bool(rng.random() < 0.5),
            )
        )
    return sorted(placed, key=lambda p: (p.start, p.end, p.label))


def _fade(n: int, floor: float, rising: bool) -> np.ndarray:
    """``(n,)`` class weight across a transition phase, from ``floor`` towards 1."""
    ramp = floor + (1.0 - floor) * (np.arange(n) + 0.5) / n
    return ramp if rising else ramp[::-1]


def _render_video(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    steps: int,
    instances: list[Instance],
    class_patterns: np.ndarray,
    confusers: np.ndarray,
) -> np.ndarray:
    """``(steps, D)`` float32 features of one video.

    ``class_patterns`` is ``(C, 3, D)`` (start, core, end); ``confusers`` is ``(K, D)``.
    """
    x = _ar1(rng, steps, cfg.dim, cfg.drift_phi, cfg.drift_std)
    x += _ar1(rng, steps, cfg.dim, cfg.fast_phi, cfg.fast_std)
    x += rng.standard_normal((steps, cfg.dim)) * cfg.white_std
    for _ in range(int(rng.poisson(cfg.burst_rate * steps / 100.0))):
        length = int(rng.integers(2, 13))
        at = int(rng.integers(0, max(1, steps - length)))
        bump = np.sin(np.pi * (np.arange(length) + 0.5) / length)[:, None]
        k = int(rng.integers(cfg.num_confusers))
        x[at : at + length] += cfg.confuser * bump * confusers[k]
    for inst in instances:
        start_p, core_p, end_p = class_patterns[inst.label] * cfg.signal
        other = confusers[inst.confuser] * cfg.confuser
        w_in = _fade(inst.b - inst.start, cfg.fade_floor, rising=True)[:, None]
        w_out = _fade(inst.end - inst.c, cfg.fade_floor, rising=False)[:, None]
        x[inst.start : inst.b] += w_in * start_p + (1 - w_in) * other * inst.fade_in_confuser
        x[inst.b : inst.c] += core_p
        x[inst.c : inst.end] += w_out * end_p + (1 - w_out) * other * inst.fade_out_confuser
    return x.astype(np.float32)


def class_name(label: int) -> str:
    """Name of synthetic class ``label``."""
    return f"action_{label:02d}"


def _subsets(n: int) -> list[str]:
    """Subset of each video index: the first 2/3 training, then validation, then test."""
    n_eval = max(1, round(n / 6))
    n_train = n - 2 * n_eval
    return ["training"] * n_train + ["validation"] * n_eval + ["test"] * n_eval


def _instance_json(inst: Instance) -> dict:
    return {
        "label": class_name(inst.label),
        "label_id": inst.label,
        "segment": [float(inst.start), float(inst.end)],
        "phases": {
            "start": [float(inst.start), float(inst.b)],
            "core": [float(inst.b), float(inst.c)],
            "end": [float(inst.c), float(inst.end)],
        },
    }


def generator_record(cfg: SyntheticConfig) -> dict:
    """What the annotation JSON records about how it was generated."""
    params = {name: value for name, value in asdict(cfg).items() if name != "seed"}
    return {"version": GENERATOR_VERSION, "seed": cfg.seed, "params": params}


def shipped_config() -> SyntheticConfig:
    """The ``dataset.generator`` block of the shipped ``conf/dataset/synthetic.yaml``: the
    default benchmark's parameters (the command line's defaults)."""
    text = (files("asl_tal.conf") / "dataset" / "synthetic.yaml").read_text()
    block = OmegaConf.to_container(OmegaConf.create(text).dataset.generator)
    return settings_from(SyntheticConfig, block, "dataset.generator")


def generate(out_dir: str | Path, cfg: SyntheticConfig) -> Path:
    """Write the benchmark into ``out_dir`` (created if needed); same ``cfg``, same bytes.

    Not atomic and not locked: use :func:`ensure_synthetic` where jobs may run in parallel.
    Returns the path of ``annotations.json``.
    """
    out_dir = Path(out_dir)
    feat_dir = out_dir / "features"
    feat_dir.mkdir(parents=True, exist_ok=True)
    root_seq = np.random.SeedSequence(cfg.seed)
    pattern_seq, *video_seqs = root_seq.spawn(cfg.num_videos + 1)
    pattern_rng = np.random.default_rng(pattern_seq)
    class_patterns = _unit_patterns(pattern_rng, cfg.num_classes * 3, cfg.dim)
    class_patterns = class_patterns.reshape(cfg.num_classes, 3, cfg.dim)
    confusers = _unit_patterns(pattern_rng, cfg.num_confusers, cfg.dim)

    database = {}
    for index, (subset, seq) in enumerate(zip(_subsets(cfg.num_videos), video_seqs, strict=True)):
        rng = np.random.default_rng(seq)
        steps = int(rng.integers(cfg.min_length, cfg.max_length + 1))
        instances = _place_instances(rng, cfg, steps)
        feats = _render_video(rng, cfg, steps, instances, class_patterns, confusers)
        video_id = f"synth_{subset}_{index:04d}"
        np.save(feat_dir / f"{video_id}.npy", feats)
        database[video_id] = {
            "subset": subset,
            "duration": float(steps),
            "fps": 1.0,
            "annotations": [_instance_json(inst) for inst in instances],
        }
    data = {
        "version": GENERATOR_VERSION,
        "generator": generator_record(cfg),
        "database": database,
    }
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def _recorded_generator(path: Path) -> dict | None:
    """The ``generator`` record of an existing annotation file, or None if absent/unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("generator")
    except (json.JSONDecodeError, AttributeError) as err:
        log.warning("%s: unreadable (%s); regenerating", path, err)
        return None


def ensure_synthetic(root: str | Path, cfg: SyntheticConfig, force: bool) -> Path:
    """Generate the benchmark into ``root`` unless it is already there with these parameters
    (``force``: generate it anyway).

    Safe for parallel jobs: holds ``root/.synthetic.lock`` while checking and writing, and
    writes into a temporary folder inside ``root`` that is moved into place at the end,
    ``annotations.json`` last, so a reader never sees a half-written dataset. Returns ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ann_path = root / "annotations.json"
    wanted = generator_record(cfg)
    with FileLock(root / ".synthetic.lock"):
        if not force and _recorded_generator(ann_path) == wanted:
            return root
        log.info("generating synthetic benchmark (seed %d) into %s", cfg.seed, root)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-synthetic-", dir=root))
        try:
            generate(tmp, cfg)
            ann_path.unlink(missing_ok=True)
            old = root / "features"
            if old.exists():
                trash = tmp / "old-features"
                os.replace(old, trash)
            os.replace(tmp / "features", root / "features")
            os.replace(tmp / "annotations.json", ann_path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = shipped_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--videos", type=int, default=defaults.num_videos)
    parser.add_argument("--classes", type=int, default=defaults.num_classes)
    parser.add_argument("--dim", type=int, default=defaults.dim)
    parser.add_argument("--min-length", type=int, default=defaults.min_length)
    parser.add_argument("--max-length", type=int, default=defaults.max_length)
    parser.add_argument("--max-action", type=int, default=defaults.max_action)
    parser.add_argument("--force", action="store_true", help="regenerate even if present")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    block = {
        **asdict(shipped_config()),
        "seed": args.seed,
        "num_videos": args.videos,
        "num_classes": args.classes,
        "dim": args.dim,
        "min_length": args.min_length,
        "max_length": args.max_length,
        "max_action": args.max_action,
    }
    cfg = settings_from(SyntheticConfig, block, "dataset.generator")
    root = ensure_synthetic(args.out, cfg, force=args.force)
    print(root / "annotations.json")


if __name__ == "__main__":
    main()
