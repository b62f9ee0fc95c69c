"""Regenerate the DeepKeyGen paper's experimental section: `--quick|--full --out DIR`.

A thin wrapper over `keras_dkg.reproduce.cli` (docs/reproduce.md).
"""

import sys

from keras_dkg.reproduce.cli import main

if __name__ == "__main__":
    sys.exit(main())
