"""The networks' old import path: `.keras` files and scripts written before keras_dkg.train existed.

The layers are registered as "keras_dkg>ReflectionPadding2D" etc. (unchanged), so loading
an old file needs only this import (or keras_dkg.train.networks).
"""

from keras_dkg.train.networks import *  # noqa: F401,F403
from keras_dkg.train.networks import __all__  # noqa: F401
