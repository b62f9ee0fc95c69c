"""`python -m keras_dkg.fit`: the training CLI, kept at its documented path (keras_dkg.train.cli)."""

import sys

from keras_dkg.train.cli import build_parser, config_from, main

__all__ = ["build_parser", "config_from", "main"]

if __name__ == "__main__":
    sys.exit(main())
