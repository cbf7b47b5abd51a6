"""The benchmarks of asl-tal; each sub-command prints (and with --out writes) one JSON object.

Sub-commands (``python scripts/benchmark.py SUB-COMMAND --help`` lists each one's options):

- ``pipeline``: the whole ASL pipeline section by section (training step, inference,
  Soft-NMS, scorer, loading, growth with ``T``, the machine's ceiling), or two settings
  side by side (``--compare``);
- ``eval``: the detection scorer and batched Soft-NMS at the scale of a large test set;
- ``loading``: loading, resampling and collating a batch of two THUMOS-sized videos;
- ``losses``: label assignment and the objective's forward + backward at the THUMOS shape;
- ``preflight``: the feature pre-flight check on 1,000 THUMOS-sized files;
- ``actionformer``: our training step and inference beside ActionFormer's official code
  (a checkout of it), alternately in one process.

Every JSON starts with the ``command`` that produced it.

    python scripts/benchmark.py pipeline --config thumos --what train,infer --repeats 5
    python scripts/benchmark.py preflight --files 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

# the sub-commands live in scripts/benchmarking/, next to this file
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarking import actionformer, evaluation, loading, losses, pipeline, preflight

SUB_COMMANDS = {
    "pipeline": pipeline,
    "eval": evaluation,
    "loading": loading,
    "losses": losses,
    "preflight": preflight,
    "actionformer": actionformer,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="sub_command", required=True, metavar="SUB-COMMAND")
    for name, module in SUB_COMMANDS.items():
        summary = module.__doc__.splitlines()[0].split(": ", 1)[1].rstrip(".")
        sub = commands.add_parser(name, help=summary, description=module.__doc__.splitlines()[0])
        module.add_arguments(sub)
        sub.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run one sub-command; print its JSON (and write it to ``--out``) and return it."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    result = {
        "command": shlex.join(["python", "scripts/benchmark.py", *argv]),
        **SUB_COMMANDS[args.sub_command].run(args),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
