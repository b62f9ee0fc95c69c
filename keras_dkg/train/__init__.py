"""Training DeepKeyGen (the layer that imports Keras, on TensorFlow or JAX).

    from keras_dkg.train import TrainConfig, train
    result = train(TrainConfig.from_recipe("recommended", out="runs/x", image_size=128, steps=1000))

`config` (TrainConfig), `recipes`, `networks` (G, D, P), `losses` (keras.ops, both
backends), `model` (DeepKeyGen), `step_tf` / `step_jax` (the one step on each backend),
`data`, `checkpoints`, `runfolder`, `loop` (`train`), `architecture`, `cli`.
Importing this package loads no Keras; `train` loads the backend the config names.
"""

from keras_dkg.train.config import TrainConfig
from keras_dkg.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
