"""The runtime's commands, thin shells over the library: dkg-encrypt / dkg-decrypt (encrypt),
their --batch options (batch), dkg-keygen (keygen), dkg-keys (keys) and the options only
they have (options).
"""
