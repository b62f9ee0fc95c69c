"""The flat runtime's old module paths, kept for one release (issue 24 moved them into packages).

`import keras_dkg.runtime.keygen` (or `.cipher`, `.imageio`, `.cipher_cli`, ...) still works and
gives a module whose names are looked up in the new home(s), with a DeprecationWarning that
names them. `keras_dkg.runtime.keys`, `.keystore`, `.formats` and `.batch` are packages now
and export the old modules' names themselves. Names that changed (a private helper made
public) are in RENAMED. Nothing here imports a new module until an old path is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

PREFIX = "keras_dkg.runtime."
#: old module (under keras_dkg.runtime) -> its new home(s), searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "audit": ("keystore.audit",),
    "batch_checks": ("batch.checks",),
    "batch_cli": ("cli.batch",),
    "batch_listing": ("batch.listing",),
    "batch_pool": ("batch.signals", "batch.engines.environment", "batch.engines.processes"),
    "batch_ray": ("batch.engines.ray_actors",),
    "batch_report": ("batch.report",),
    "batch_worker": ("batch.worker",),
    "cipher": ("ciphers.metadata", "ciphers.xor", "ciphers.registry"),
    "cipher_cli": ("cli.encrypt",),
    "containers": ("formats.png_tiff", "formats.detect"),
    "custody": ("keystore.custody",),
    "dicom": ("formats.dicom",),
    "engine_choice": ("keys.engines.choice",),
    "engine_onnxruntime": ("keys.engines.onnxruntime_engine",),
    "engine_openvino": ("keys.engines.openvino_engine",),
    "engines": ("keys.engines.registry",),
    "hardened": ("ciphers.hardened",),
    "imageio": ("guards.atomic", "formats.detect", "formats.sources", "formats.images"),
    "inputs": ("guards.inputs",),
    "keygen": ("keys.generator",),
    "keygen_cli": ("cli.keygen",),
    "keys_cli": ("cli.keys",),
    "keystore_admin": ("keystore.admin",),
    "keystore_check": ("keystore.check",),
    "keystore_locks": ("keystore.locks",),
    "nifti": ("formats.sources", "formats.nifti"),
    "nonces": ("keys.nonces",),
    "outputs": ("guards.outputs",),
    "preprocess": ("keys.preprocess",),
    "providers": ("keys.engines.providers",),
    "rasters": ("formats.raster_headers",),
    "ray_reaper": ("batch.engines.ray_reaper",),
    "sealing": ("keystore.sealing",),
    "tiling": ("keys.tiling",),
}
#: (old module, old name) -> the name in the new home
RENAMED = {("cipher", "_encrypt_with"): "encrypt_with", ("cipher", "_xor_keystream"): "xor_keystream",
           ("cipher", "_raw_bytes"): "raw_bytes", ("cipher", "_from_raw_bytes"): "from_raw_bytes",
           ("cipher", "_keystream_for"): "keystream_for", ("nifti", "_volume_array"): "volume_array"}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds only the old names (after every real finder has said no) and loads a forwarding module."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(PREFIX) and fullname[len(PREFIX):] in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__[len(PREFIX):]
        homes = [PREFIX + home for home in MOVED[old]]
        warnings.warn(f"{module.__name__} is deprecated: it moved to {', '.join(homes)} "
                      "(the old path goes in the next release)", DeprecationWarning, stacklevel=2)
        targets = [importlib.import_module(home) for home in homes]

        def forward(name: str):
            wanted = RENAMED.get((old, name), name)
            for target in targets:
                if hasattr(target, wanted):
                    return getattr(target, wanted)
            raise AttributeError(f"module {module.__name__!r} (moved to {', '.join(homes)}) has no attribute {name!r}")

        module.__getattr__ = forward
        module.__dir__ = lambda: sorted({n for t in targets for n in dir(t)})


def install() -> None:
    """Put the old paths' finder last on sys.meta_path (once)."""
    if not any(isinstance(finder, _OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(_OldPaths())
