"""`dkg`: one command for every tool, in the style of git (`dkg COMMAND --help`).

    dkg fit --recipe recommended -o runs/r        dkg keygen --model g.onnx --seed ct.dcm -o key.png
    dkg export onnx runs/r -o g.onnx              dkg encrypt scan.dcm --key key.png -o scan.enc.dcm
    dkg decrypt --batch enc/ -o back/ --keys ks/  dkg analyze nist key.png
    dkg domain src/ -o domain/                    dkg diagnose runs/r        dkg reproduce --quick -o report/

Each command is the tool it names, with the same options: `dkg encrypt ...` is
`dkg-encrypt ...`, `dkg fit ...` is `python -m keras_dkg.fit ...` (those stay as aliases).
A command's module is imported only when it runs, so `dkg --help` and the runtime
commands never load TensorFlow.
"""

from __future__ import annotations

import sys

from keras_dkg.common import import_object

#: command -> (module:function, one line of help)
COMMANDS = {
    "fit": ("keras_dkg.train.cli:main", "train a generator (python -m keras_dkg.fit, dkg-fit)"),
    "export": ("keras_dkg.export.cli:main", "Keras generator -> ONNX / TFLite, with a parity check (dkg-export)"),
    "keygen": ("keras_dkg.runtime.cli.keygen:main", "make a key image from a seed with onnxruntime (dkg-keygen)"),
    "encrypt": ("keras_dkg.runtime.cli.encrypt:encrypt_main", "encrypt a file or, with --batch, a folder (dkg-encrypt)"),
    "decrypt": ("keras_dkg.runtime.cli.encrypt:decrypt_main", "verify and decrypt a file or a folder (dkg-decrypt)"),
    "keys": ("keras_dkg.runtime.cli.keys:main", "key custody: protected stores, rotate, verify, audit (dkg-keys)"),
    "analyze": ("keras_dkg.analysis.cli:main", "key and cipher statistics, NIST SP 800-22, attacks (dkg-analyze)"),
    "gateway": ("keras_dkg.gateway.cli:main", "encrypting DICOM node in front of a PACS; gateway check (dkg-gateway)"),
    "domain": ("keras_dkg.domains:main", "build a chaotic transformation domain (dkg-domain)"),
    "diagnose": ("keras_dkg.diagnose.cli:main", "why a run's keys are (not) key-like (python -m keras_dkg.diagnose)"),
    "reproduce": ("keras_dkg.reproduce.cli:main", "the paper's tables with ours beside them (tools/reproduce_paper.py)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: dkg COMMAND [options]   (dkg COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if arguments else 2
    if arguments[0] in ("-V", "--version"):
        from keras_dkg import __version__

        print(f"dkg (keras_dkg) {__version__}")
        return 0
    name, rest = arguments[0], arguments[1:]
    if name not in COMMANDS:
        print(f"dkg: error: unknown command {name!r}; choose from {', '.join(COMMANDS)} (dkg --help)", file=sys.stderr)
        return 2
    return import_object(COMMANDS[name][0])(rest)


if __name__ == "__main__":
    sys.exit(main())
