"""`dkg-export onnx|tflite RUN_DIR|MODEL.keras -o OUT`: export the generator with a parity check.

Prints the parity figures and what was written; converter logs only with --verbose.
Exit 0 on success; on failure one line `dkg-export: error: ...` and a non-zero code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_dkg.errors import run_cli
from keras_dkg.export.parity import MAX_ABS_DELTA, MAX_BYTE_SHARE  # noqa: E402

PROG = "dkg-export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Export the DeepKeyGen generator for the TensorFlow-free runtime. Every export is "
            f"compared with Keras on the embedded seed at two sizes and refused beyond max|Δ| "
            f"{MAX_ABS_DELTA:g} or {MAX_BYTE_SHARE:.0%} differing key bytes."
        ),
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="{onnx,tflite}")
    for name, help_text in (("onnx", "ONNX for onnxruntime (dkg-keygen)"), ("tflite", "TFLite flatbuffer")):
        sub = formats.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("source", help="run folder (generator.keras + run.json) or a .keras file")
        sub.add_argument("-o", "--output", required=True, help=f"output .{name} file")
        sub.add_argument("--training-size", type=int, default=None,
                         help="training image size N (default: run.json's image_size, else 256)")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing output")
        sub.add_argument("--verbose", action="store_true", help="show TensorFlow/converter logs")
        if name == "onnx":
            sub.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default: 17)")
    return parser


def _check_output(args: argparse.Namespace) -> None:
    """The output rule (runtime.guards.outputs), before TensorFlow is even imported."""
    from keras_dkg.export.source import GENERATOR_FILE, RUN_FILE
    from keras_dkg.runtime.guards.outputs import OutputGuard

    source = Path(args.source)
    inputs = ({"Keras model": source / GENERATOR_FILE, "run record": source / RUN_FILE} if source.is_dir()
              else {"Keras model": source})
    OutputGuard(inputs=inputs, overwrite=args.overwrite).check_file(args.output, f"{args.format} model")


def run(args: argparse.Namespace) -> None:
    from keras_dkg.common import quiet
    from keras_dkg.export.source import load_source

    _check_output(args)
    with quiet(not args.verbose):
        source = load_source(args.source, args.training_size)
        if args.format == "onnx":
            from keras_dkg.export.onnx import export_onnx

            result = export_onnx(source, args.output, opset=args.opset, overwrite=args.overwrite,
                                 verbose=args.verbose)
        else:
            from keras_dkg.export.tflite import export_tflite

            result = export_tflite(source, args.output, overwrite=args.overwrite, verbose=args.verbose)
    for line in result.report.lines():
        print(line)
    details = ", ".join(f"{k} {v}" for k, v in result.details.items() if k != "ops")
    print(f"wrote {result.path} (training size {source.training_size}; {details})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
