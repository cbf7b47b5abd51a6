"""A checkpoint's network and decoding as one portable ``torch.export`` program, written
by ``asl-export CKPT --out model.pt2`` (:mod:`asl_tal.cli.export`) and loaded back by
:class:`ExportedDetector` (docs/deployment.md).

The program (:class:`DeployableDetector`) takes a padded batch and the grid geometry of
each video and returns the pre-NMS candidates in seconds::

    feats (B, D, T) float32, zero on padding    mask (B, T) bool, True on real steps
    fps (B,)  stride (B,)  window (B,) float32  (docs/data.md §3)
    -> segments (B, K, 2) float32 seconds (not clipped), scores (B, K), labels (B, K) int64,
       valid (B, K) bool

``B`` and ``T`` are dynamic; ``T`` must be a multiple of the coarsest pyramid stride
(``required_multiple`` in the artifact's metadata), up to ``--max-length``. Soft-NMS is
data-dependent (selection rounds until each video is done) and stays outside the graph:
:func:`suppress` (or :meth:`ExportedDetector.detect`) runs it and clips to each video's
duration, as ``eval`` / ``predict`` do. The artifact's ``asl_tal.json`` (an extra file of
the ``.pt2`` archive) holds the class names and the post-processing settings that step uses.

:class:`ExportedDetector` loads only what ``asl-export`` writes: :func:`check_archive`
reads the archive with ``zipfile``, ``json`` and ``ast`` before torch does, and refuses
anything torch would unpickle (weights or constants marked ``use_pickle``, opaque or custom
objects, example inputs beyond what ``weights_only`` loads), compiled code, nodes calling
more than tensor ops and size arithmetic, and guards or size expressions beyond arithmetic:
torch runs each of those as code from the file (docs/deployment.md).
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from asl_tal.checkpoints import load_checkpoint
from asl_tal.config_blocks import settings_from
from asl_tal.detector import ASLDetector
from asl_tal.errors import UserInputError
from asl_tal.outputs import check_output, check_writable, write_atomically, writing
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.postprocess.decode import Detections, decode_candidates
from asl_tal.postprocess.nms import batched_nms

METADATA_FILE = "asl_tal.json"
FORMAT_VERSION = 1
DEFAULT_MAX_LENGTH = 16384
INPUT_NAMES = ("feats", "mask", "fps", "stride", "window")
OUTPUT_NAMES = ("segments", "scores", "labels", "valid")
OUT_HINT = "pass --out a file in a writable folder"

# what torch.export.save writes for one program named "model" (its
# torch/export/pt2_archive/constants.py), below the archive's one top folder: raw tensor
# bytes, JSON, the example inputs (torch.save) and our metadata. Weight and constant files
# written by pickling (tensor subclasses, opaque or custom objects) and compiled code
# (data/aotinductor/) are not among them.
ARCHIVE_ENTRIES = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/sample_inputs/model\.pt"
    r"|data/weights/(model_weights_config\.json|weight_\d+)"
    r"|data/constants/(model_constants_config\.json|tensor_\d+)"
    rf"|extra/{re.escape(METADATA_FILE)}"
)
REQUIRED_ENTRIES = (
    "archive_version",
    "models/model.json",
    "data/weights/model_weights_config.json",
    "data/constants/model_constants_config.json",
    "data/sample_inputs/model.pt",
    f"extra/{METADATA_FILE}",
)
# payload config -> the file name prefix of its raw (never pickled) tensors
PAYLOAD_CONFIGS = {
    "data/weights/model_weights_config.json": "weight_",
    "data/constants/model_constants_config.json": "tensor_",
}
# what a node of the program may call besides a registered tensor op (torch.ops.<ns>.<op>.
# <overload>, :func:`_is_registered_op`): symbolic size arithmetic (torch.sym_*, math.*)
# and these functions of the operator module (never attrgetter / methodcaller, which reach
# any attribute)
OPERATOR_FUNCTIONS = (
    "add sub mul truediv floordiv mod pow neg pos abs eq ne lt le gt ge "
    "and_ or_ xor not_ invert lshift rshift getitem"
).split()
NODE_TARGET = re.compile(
    rf"torch\.sym_[a-z]+|math\.[a-z]+|_operator\.({'|'.join(OPERATOR_FUNCTIONS)})"
)
# the syntax of the size expressions (sympy, evaluated when torch loads the program) and of
# the input guards (Python, compiled into the program's module): arithmetic, comparisons and
# calls of capitalised (sympy) or size names on plain words, sizes and numbers
EXPRESSION_NODES = (
    ast.Expression,
    ast.Call,
    ast.keyword,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.Subscript,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)
LOWER_CASE_NAMES = re.compile(r"[a-z]+\d+|min|max")  # size symbols (s0, u1) and min / max
PLAIN_WORD = re.compile(r"(?!.*__)\w+")


class DeployableDetector(nn.Module):
    """Network + point table + candidate decoding + grid-to-seconds mapping, no NMS.

    Args:
        detector: the (EMA) detector of a checkpoint, in eval mode.
        cfg: post-processing settings; decoding reads ``score_thresh``, ``pre_nms_topk``,
            ``topk_per_level`` and ``duration_thresh`` (they are baked into the graph).
    """

    def __init__(self, detector: ASLDetector, cfg: PostprocessConfig) -> None:
        super().__init__()
        self.network = detector.network
        self.point_generator = detector.point_generator
        self.cfg = cfg

    def forward(
        self,
        feats: torch.Tensor,
        mask: torch.Tensor,
        fps: torch.Tensor,
        stride: torch.Tensor,
        window: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``feats (B, D, T)``, ``mask (B, T)``, ``fps / stride / window (B,)`` -> segments
        ``(B, K, 2)`` in seconds, scores ``(B, K)``, labels ``(B, K)``, valid ``(B, K)``."""
        out = self.network(feats, mask)
        seq_len = feats.shape[-1]
        points = self.point_generator(seq_len, device=feats.device)
        cand = decode_candidates(
            points,
            out.flat_logits().float(),
            out.flat_offsets().float(),
            out.flat_mask(),
            self.cfg,
            level_sizes=self.point_generator.level_sizes(seq_len),
        )
        # VideoMeta.grid_to_seconds with offset 0 (evaluation samples are never cropped)
        seconds = (cand.segments * stride[:, None, None] + 0.5 * window[:, None, None]) / fps[
            :, None, None
        ]
        return seconds, cand.scores, cand.labels, cand.valid


def suppress(
    segments: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    durations: Sequence[float],
    cfg: PostprocessConfig,
) -> list[Detections]:
    """NMS over the program's outputs, then each video's segments clipped to
    ``[0, duration]``: one :class:`Detections` per video (segments float64 seconds)."""
    if len(durations) != scores.shape[0]:
        raise ValueError(f"{len(durations)} durations for a batch of {scores.shape[0]} videos")
    segments, scores, labels, valid = batched_nms(segments, scores, labels, valid, cfg)
    out = []
    for i, duration in enumerate(durations):
        keep = valid[i]
        seconds = segments[i][keep].double().clamp(0.0, float(duration))
        out.append(Detections(seconds, scores[i][keep], labels[i][keep].long()))
    return out


def export_detector(
    detector: ASLDetector, cfg: PostprocessConfig, max_length: int = DEFAULT_MAX_LENGTH
) -> torch.export.ExportedProgram:
    """``torch.export`` of :class:`DeployableDetector` with dynamic batch size and length
    (``T = k · required_multiple``, ``k >= 2``, ``T <= max_length``)."""
    multiple = detector.required_multiple
    if max_length < 2 * multiple:
        raise UserInputError(
            f"--max-length {max_length}: must be at least {2 * multiple} (twice the coarsest "
            f"stride {multiple} of this model)"
        )
    module = DeployableDetector(detector, cfg).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    # one coarsest step is refused: the trace at two steps assumes more than one
    steps = torch.export.Dim("steps", min=2, max=max_length // multiple)
    length = multiple * steps
    # example sizes of at least 2: torch.export fixes dimensions of size 0 or 1
    example_len = 2 * multiple
    feats = torch.zeros(2, sum(detector.network.input_dims), example_len)
    mask = torch.ones(2, example_len, dtype=torch.bool)
    # three distinct tensors: the same tensor passed twice would become one input
    fps, stride, window = torch.ones(2), torch.ones(2), torch.ones(2)
    dynamic = {
        "feats": {0: batch, 2: length},
        "mask": {0: batch, 1: length},
        "fps": {0: batch},
        "stride": {0: batch},
        "window": {0: batch},
    }
    with torch.no_grad():
        return torch.export.export(
            module, (feats, mask, fps, stride, window), dynamic_shapes=dynamic
        )


def export_checkpoint(
    ckpt_path: str | Path, out: str | Path, max_length: int = DEFAULT_MAX_LENGTH
) -> dict:
    """Export the EMA detector of ``ckpt_path`` (post-processing from the checkpoint) to
    ``out`` (``.pt2``); returns the metadata written beside the program. ``out`` is never the
    checkpoint nor an existing file other than an earlier artifact (:func:`is_export_artifact`),
    and its folder is created and checked writable, before the checkpoint is read.
    """
    check_output(
        out,
        "--out",
        [("the checkpoint being exported", ckpt_path)],
        ours=is_export_artifact,
        kind="an asl-export artifact",
    )
    check_writable(Path(out).parent, OUT_HINT)
    module = load_checkpoint(ckpt_path)
    if module.num_model_classes != len(module.class_names):
        raise UserInputError(
            f"{ckpt_path}: a class-agnostic checkpoint needs video-level class scores to name "
            "its detections; export supports checkpoints that predict the classes themselves"
        )
    detector = module.eval_detector.eval()
    program = export_detector(detector, module.postprocess_cfg, max_length)
    metadata = artifact_metadata(
        detector, module.postprocess_cfg, module.class_names, Path(ckpt_path).name, max_length
    )
    write_artifact(program, metadata, out)
    return metadata


def artifact_metadata(
    detector: ASLDetector,
    cfg: PostprocessConfig,
    class_names: Sequence[str],
    source: str,
    max_length: int,
) -> dict:
    """The ``asl_tal.json`` of an artifact: inputs, outputs, sizes, classes, NMS settings."""
    return {
        "format_version": FORMAT_VERSION,
        "source_checkpoint": source,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "input_dim": sum(detector.network.input_dims),
        "required_multiple": detector.required_multiple,
        "max_length": max_length // detector.required_multiple * detector.required_multiple,
        "class_names": list(class_names),
        "postprocess": asdict(cfg),
    }


def write_artifact(program: torch.export.ExportedProgram, metadata: dict, out: str | Path) -> None:
    """``program`` with ``metadata`` (as ``asl_tal.json``) into the ``.pt2`` file ``out``,
    written whole (:func:`~asl_tal.outputs.write_atomically`); a file that cannot be written
    is one :class:`~asl_tal.errors.OutputWriteError`."""
    with writing(out, OUT_HINT):
        write_atomically(
            Path(out),
            lambda f: torch.export.save(
                program, f, extra_files={METADATA_FILE: json.dumps(metadata)}
            ),
        )


class _Refused(Exception):
    """What makes :func:`check_archive` refuse an archive (the message)."""


def check_archive(data: bytes, path: str | Path) -> None:
    """Refuse a ``.pt2`` archive (its bytes ``data``, read from ``path``) that holds more
    than :func:`export_checkpoint` writes, before torch reads anything in it.

    Raises:
        UserInputError: one line naming ``path`` and what it holds.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = _archive_entries(archive.namelist())
        _check_payload_configs(archive, entries)
        _check_program(json.loads(archive.read(entries["models/model.json"])))
        _check_examples(archive.read(entries["data/sample_inputs/model.pt"]))
    except (zipfile.BadZipFile, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        what = "it is not a readable .pt2 archive"
    except _Refused as err:
        what = str(err)
    else:
        return
    raise UserInputError(
        f"{path}: not loaded: {what}; ExportedDetector loads only what asl-export writes "
        "(export the checkpoint again with asl-export)"
    )


def _archive_entries(names: list[str]) -> dict[str, str]:
    """Entry (below the archive's top folder) -> name in the zip; only
    :data:`ARCHIVE_ENTRIES`, each of :data:`REQUIRED_ENTRIES` present."""
    root = names[0].split("/", 1)[0] if names else ""
    entries = {}
    for name in names:
        top, _, entry = name.partition("/")
        if top != root or not ARCHIVE_ENTRIES.fullmatch(entry):
            raise _Refused(f"it holds {name!r}, which asl-export never writes")
        entries[entry] = name
    for entry in REQUIRED_ENTRIES:
        if entry not in entries:
            raise _Refused(f"it has no {entry}")
    return entries


def _check_payload_configs(archive: zipfile.ZipFile, entries: dict[str, str]) -> None:
    """Every weight and constant is raw tensor bytes (``use_pickle: false``, a ``weight_`` /
    ``tensor_`` file), never an object torch would unpickle."""
    for entry, prefix in PAYLOAD_CONFIGS.items():
        for key, meta in json.loads(archive.read(entries[entry]))["config"].items():
            if meta["use_pickle"] is not False or not meta["path_name"].startswith(prefix):
                raise _Refused(
                    f"{entry} asks to unpickle {key!r} ({meta['path_name']}): unpickling a "
                    "file runs the code in it"
                )


def _check_program(program: dict) -> None:
    """Every node calls a registered op or size arithmetic; every text torch evaluates
    (guards, sympy expressions) is a plain expression (:func:`_plain_expression`)."""
    targets, texts = _code_texts(program)
    for target in sorted(targets):
        if not (NODE_TARGET.fullmatch(target) or _is_registered_op(target)):
            raise _Refused(f"its program calls {target!r}, which asl-export never exports")
    for text in texts:
        if not _plain_expression(text):
            raise _Refused(f"its program holds the expression {text!r}, code of no export")


def _check_examples(examples: bytes) -> None:
    """The example inputs load with PyTorch's restricted ``weights_only`` unpickler (torch
    would retry them without the restriction)."""
    if not examples:
        return
    try:
        torch.load(io.BytesIO(examples), weights_only=True)
    except Exception:  # whatever the restricted loader refuses, torch's retry would run
        raise _Refused("its example inputs hold more than tensors") from None


def _is_registered_op(target: str) -> bool:
    """Whether ``target`` names an overload of an operator registered with torch
    (``torch.ops.aten.convolution.default``), as torch resolves it when loading."""
    parts = target.split(".")
    if len(parts) != 5 or parts[:2] != ["torch", "ops"] or parts[2].startswith("_"):
        return False
    namespace = getattr(torch.ops, parts[2])
    if not isinstance(namespace, torch._ops._OpNamespace):  # a method of torch.ops
        return False
    packet = getattr(namespace, parts[3], None)
    if not isinstance(packet, torch._ops.OpOverloadPacket):
        return False
    return isinstance(getattr(packet, parts[4], None), torch._ops.OpOverload)


def _code_texts(program: dict) -> tuple[set[str], list[str]]:
    """What torch resolves or evaluates in ``models/model.json``: the call targets of every
    node (nested graphs included), and the texts it evaluates as code: the input guards,
    the range constraints' symbols and every ``expr_str`` (sympy)."""
    targets: set[str] = set()
    texts = list(program["guards_code"]) + list(program["range_constraints"])
    stack: list = [program["graph_module"]]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "target" in item and "inputs" in item:  # a node
                targets.add(item["target"])
            texts += [value for key, value in item.items() if key == "expr_str"]
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return targets, texts


def _plain_expression(text: str) -> bool:
    """Whether ``text`` parses as an :data:`EXPRESSION_NODES` expression whose names are
    capitalised (sympy: ``Add``, ``Symbol``; the guards' ``L``) or :data:`LOWER_CASE_NAMES`,
    whose only attribute is ``.size`` and whose strings are :data:`PLAIN_WORD`\\ s: nothing
    that reaches a builtin, a module or an attribute that runs code."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            ok = node.id[0].isupper() and "__" not in node.id
            ok = ok or bool(LOWER_CASE_NAMES.fullmatch(node.id))
        elif isinstance(node, ast.Attribute):
            ok = node.attr == "size"
        elif isinstance(node, ast.Constant):
            ok = not isinstance(node.value, (str, bytes)) or bool(PLAIN_WORD.fullmatch(node.value))
        else:
            ok = isinstance(node, EXPRESSION_NODES)
        if not ok:
            return False
    return True


def is_export_artifact(path: Path) -> bool:
    """True when ``path`` is a ``.pt2`` archive holding :data:`METADATA_FILE` (one that
    :func:`export_checkpoint` wrote)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(f"/extra/{METADATA_FILE}") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class ExportedDetector:
    """An exported artifact loaded back: the program, its metadata, and :meth:`detect`.

    The file is read once and checked (:func:`check_archive`) before torch reads it.

    Args:
        path: a ``.pt2`` file written by :func:`export_checkpoint`.
    """

    def __init__(self, path: str | Path) -> None:
        data = Path(path).read_bytes()
        check_archive(data, path)
        extra = {METADATA_FILE: ""}
        self.program = torch.export.load(io.BytesIO(data), extra_files=extra)
        self.metadata = json.loads(extra[METADATA_FILE])
        self.postprocess = settings_from(
            PostprocessConfig, self.metadata["postprocess"], "postprocess"
        )
        self.class_names = list(self.metadata["class_names"])
        self._run = self.program.module()

    def candidates(self, feats, mask, fps, stride, window) -> tuple[torch.Tensor, ...]:
        """The program's outputs (see the module docstring) for one padded batch."""
        return tuple(self._run(feats, mask, fps, stride, window))

    def detect(
        self,
        feats: torch.Tensor,
        mask: torch.Tensor,
        fps: torch.Tensor,
        stride: torch.Tensor,
        window: torch.Tensor,
        durations: Sequence[float],
    ) -> list[Detections]:
        """Detections in seconds per video: the program, then :func:`suppress`."""
        return suppress(
            *self.candidates(feats, mask, fps, stride, window), durations, self.postprocess
        )
