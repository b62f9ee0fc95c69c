"""The runtime, the analysis and the gateway never import TensorFlow, JAX or Keras (the rule in keras_dkg/__init__.py);
the training package's config layer loads without Keras, so the CLI checks flags before the stack loads."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import keras_dkg

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'tf_keras', 'jax', 'jaxlib'):
            raise ImportError('blocked for the layering test: ' + name)
sys.meta_path.insert(0, Block())
import importlib
for name in NAMES:
    importlib.import_module(name)
print('imported', len(NAMES))
"""


def _modules(package: str) -> list[str]:
    root = Path(keras_dkg.__file__).parent / package.split(".")[-1]
    names = [package]
    for info in pkgutil.walk_packages([str(root)], prefix=package + "."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return names


def test_runtime_and_analysis_import_without_tensorflow():
    names = _modules("keras_dkg.runtime") + _modules("keras_dkg.analysis") + _modules("keras_dkg.gateway") + ["keras_dkg.common", "keras_dkg.embedded", "keras_dkg.errors",
                                                                                 "keras_dkg.cli", "keras_dkg.options"]
    result = subprocess.run([sys.executable, "-c", f"NAMES = {names!r}\n" + BLOCKER],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(names)}" in result.stdout


def test_training_config_and_cli_load_without_keras():
    names = ["keras_dkg.train", "keras_dkg.train.config", "keras_dkg.train.recipes", "keras_dkg.train.runfolder",
             "keras_dkg.train.cli", "keras_dkg.fit", "keras_dkg.export"]
    result = subprocess.run([sys.executable, "-c", f"NAMES = {names!r}\n" + BLOCKER],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


# ---------------------------------------------------------------- the import structure, parsed (no code is run)

ROOT = Path(keras_dkg.__file__).parent

#: floors from the bottom: a module may import its own floor and the floors below, never one above.
#: The first prefix that matches a module's name gives its floor (longest prefixes first).
FLOORS = {
    "keras_dkg.common": 0, "keras_dkg.errors": 0, "keras_dkg.options": 0, "keras_dkg": 0,
    "keras_dkg.runtime": 1, "keras_dkg.runtime.moved": 1, "keras_dkg.runtime.guards": 1,
    "keras_dkg.runtime.ciphers": 2,
    "keras_dkg.runtime.formats": 3,
    "keras_dkg.runtime.keys": 4,
    "keras_dkg.runtime.keystore": 5,
    "keras_dkg.runtime.encryption": 6, "keras_dkg.runtime.instances": 6,
    "keras_dkg.runtime.batch": 7,
    "keras_dkg.runtime.cli": 8,
    "keras_dkg.analysis": 9, "keras_dkg.embedded": 9,
    "keras_dkg.domains": 10, "keras_dkg.gateway": 10, "keras_dkg.train": 10, "keras_dkg.networks": 10,
    "keras_dkg.fit": 10, "keras_dkg.export": 10,
    "keras_dkg.diagnose": 11, "keras_dkg.reproduce": 11,
    "keras_dkg.cli": 12,
}


def _module_files() -> dict[str, Path]:
    files = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _imports(files: dict[str, Path]) -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, name or "")}: every import statement, at any depth (lazy ones too)."""
    import ast

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[tuple[str, str]]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    if known(target):
                        edges.add((known(target), alias.name if target == base else ""))
            elif isinstance(node, ast.Import):
                edges.update((known(a.name), "") for a in node.names if known(a.name))
        edges.discard((module, ""))
        graph[module] = {(target, name) for target, name in edges if target != module}
    return graph


def _floor(module: str) -> int:
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return FLOORS[prefix]
    raise AssertionError(f"{module}: no floor in tests/test_layering.py FLOORS (a new package? give it one)")


def test_no_module_imports_a_floor_above_its_own():
    graph = _imports(_module_files())
    upward = sorted(f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})"
                    for module, edges in graph.items() for target, _ in edges if _floor(target) > _floor(module))
    assert not upward, "imports back up the layers:\n" + "\n".join(upward)


def test_no_import_circle():
    """No two modules reach each other through imports (lazy imports inside functions count too)."""
    graph = {module: {target for target, _ in edges} for module, edges in _imports(_module_files()).items()}
    circles, index, low, stack, on_stack, counter = [], {}, {}, [], set(), [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_module_imports_another_modules_private_names():
    graph = _imports(_module_files())
    private = sorted(f"{module} imports {target}:{name}" for module, edges in graph.items()
                     for target, name in edges if name.startswith("_") and not name.startswith("__"))
    assert not private, "\n".join(private)


def test_each_runtime_folder_holds_one_concern_of_at_most_eight_modules():
    for folder in [ROOT / "runtime", *(p for p in (ROOT / "runtime").rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 8, f"{folder}: {len(modules)} modules ({', '.join(sorted(p.name for p in modules))})"
        if folder != ROOT / "runtime":
            assert (folder / "__init__.py").read_text().startswith('"""'), f"{folder}: says what it holds"


def test_old_runtime_paths_still_import_with_a_deprecation_warning():
    code = ("import warnings\nwarnings.simplefilter('error', DeprecationWarning)\n"
            "import keras_dkg.runtime.keys, keras_dkg.runtime.keystore, keras_dkg.runtime.formats, keras_dkg.runtime.batch\n"
            "from keras_dkg.runtime.keys import Key, load_key\nfrom keras_dkg.runtime.keystore import KeyStore\n"
            "from keras_dkg.runtime.formats import open_plaintext, format_of\nfrom keras_dkg.runtime.batch import encrypt_folder\n"
            "from keras_dkg.runtime.moved import MOVED\nimport importlib\n"
            "for old in MOVED:\n"
            "    try:\n        importlib.import_module('keras_dkg.runtime.' + old)\n"
            "    except DeprecationWarning as exc:\n        assert 'moved to keras_dkg.runtime.' in str(exc), exc\n"
            "    else:\n        raise AssertionError(old + ' imported without a warning')\n"
            "warnings.simplefilter('ignore', DeprecationWarning)\n"
            "from keras_dkg.runtime.keygen import KeyGenerator\nfrom keras_dkg.runtime.cipher import encrypt_array, _encrypt_with\n"
            "from keras_dkg.runtime.imageio import write_bytes_atomic, read_image, is_dicom, source_files\n"
            "from keras_dkg.runtime.cipher_cli import encrypt_main\n"
            "import keras_dkg.runtime.keys.generator as new\nassert KeyGenerator is new.KeyGenerator\n"
            "print('ok', len(MOVED))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_runtime_packages_import_without_their_optional_dependencies():
    """Every runtime folder's public names load with pydicom, nibabel, cryptography, OpenVINO and Ray
    missing: an optional dependency is imported by the run that uses it, never by a package."""
    packages = sorted(".".join(p.relative_to(ROOT.parent).parts[:-1]) for p in (ROOT / "runtime").rglob("__init__.py"))
    code = ("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('pydicom', 'nibabel', 'cryptography', 'openvino', 'ray', 'pynetdicom'):\n"
            "            raise ImportError('optional, blocked: ' + name)\nsys.meta_path.insert(0, Block())\n"
            f"import importlib\nfor name in {packages!r}:\n    importlib.import_module(name)\n"
            "print('imported', len(sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_per_file_steps_have_one_home():
    """Above the containers, only runtime.encryption runs the cipher on a file's pixels: the CLIs, the batch
    worker and the gateway call encrypt_file/decrypt_file (or runtime.instances), never a copy of the steps."""
    graph = _imports(_module_files())
    callers = sorted({module for module, edges in graph.items() for target, name in edges
                     if target == "keras_dkg.runtime.ciphers.registry" and name in ("encrypt_array", "decrypt_array")
                     and _floor(module) > _floor("keras_dkg.runtime.formats") and _floor(module) <= _floor("keras_dkg.cli")
                     and not module.startswith(("keras_dkg.analysis", "keras_dkg.reproduce", "keras_dkg.diagnose"))})
    assert callers == ["keras_dkg.runtime.encryption"], callers
