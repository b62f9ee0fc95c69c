"""The DICOM gateway (the paper's Fig. 1): an encrypting DICOM node in front of a PACS.

Modalities C-STORE to it; each instance is encrypted as `dkg-encrypt` encrypts a DICOM
file (fresh key per instance in a protected key store), spooled durably, and forwarded to
the PACS. Workstations C-FIND / C-GET / C-MOVE through it; instances come back from the
PACS, are verified and decrypted, and delivered as the modality sent them. docs/gateway.md.

config (TOML) · access (allow lists) · spool · upstream (the PACS) · forwarder ·
store_scp · retrieve_scp · status · net (TCP_NODELAY, TLS) · server (the whole) · cli.
Needs the `gateway` extra (pynetdicom); never imports TensorFlow, Keras or JAX.
"""
