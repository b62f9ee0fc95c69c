import sys

from keras_dkg.diagnose.cli import main

sys.exit(main())
