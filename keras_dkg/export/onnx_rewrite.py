"""Graph rewrites after tf2onnx that onnxruntime runs faster, the same arithmetic.

tf2onnx writes our `InstanceNormalization` layer (networks.py: mean/variance ops) as ten
nodes per norm in NCHW: GlobalAveragePool → [Reshape] → Sub → Mul(c, c) → GlobalAveragePool
→ Add(eps) → Sqrt → Reciprocal → Mul(γ) → Mul → Add(β). `fuse_instance_norm` replaces each
such chain (tf2onnx drops the Mul(γ) of a γ of ones and the Add(β) of a β of zeros) with
one ONNX `InstanceNormalization(x, γ, β, epsilon)` node, which
onnxruntime runs as one kernel. The parity check of the export (export/parity.py) still
compares the rewritten graph with Keras, so a rewrite that changed a key is refused.

`dkg-export onnx` applies it. Measured (tools/bench_keygen.py, 256² key, 2-core CPU,
onnxruntime 1.32, dkg-keygen's session options): 45.8 against 51.4 ms per key (1.12×,
61 % of numpy sgemm's GFLOP/s); with onnxruntime's default options the two run alike.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def _graph_index(graph):
    producers = {output: node for node in graph.node for output in node.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for name in dict.fromkeys(node.input):  # Mul(c, c) consumes c once
            consumers[name].append(node)
    initializers = {init.name: init for init in graph.initializer}
    return producers, consumers, initializers


def _constant(name: str, initializers, producers):
    """The value of an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _only(consumers, name: str, op_type: str):
    """The single consumer of `name` if it has type `op_type`, else None."""
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _other(node, name: str) -> str:
    return node.input[1] if node.input[0] == name else node.input[0]


def _match(mean_pool, producers, consumers, initializers):
    """The nodes and parameters of one decomposed instance norm starting at its first pool, or None."""
    x = mean_pool.input[0]
    mean = mean_pool.output[0]
    chain = [mean_pool]
    users = consumers.get(mean, [])
    if len(users) == 1 and users[0].op_type == "Reshape":
        chain.append(users[0])
        mean = users[0].output[0]
    sub = _only(consumers, mean, "Sub")
    if sub is None or list(sub.input) != [x, mean]:
        return None
    centred = sub.output[0]
    square = next((n for n in consumers.get(centred, []) if n.op_type == "Mul" and list(n.input) == [centred, centred]),
                  None)
    scale_mul = next((n for n in consumers.get(centred, []) if n.op_type == "Mul" and n is not square), None)
    if square is None or scale_mul is None or len(consumers.get(centred, [])) != 2:
        return None
    var_pool = _only(consumers, square.output[0], "GlobalAveragePool")
    add_eps = var_pool and _only(consumers, var_pool.output[0], "Add")
    sqrt = add_eps and _only(consumers, add_eps.output[0], "Sqrt")
    reciprocal = sqrt and _only(consumers, sqrt.output[0], "Reciprocal")
    if not reciprocal:
        return None
    epsilon = _constant(_other(add_eps, var_pool.output[0]), initializers, producers)
    if epsilon is None or np.size(epsilon) != 1:
        return None
    # tf2onnx folds a gamma of ones (no Mul(γ)) and a beta of zeros (no Add(β)) away
    gamma_mul = _only(consumers, reciprocal.output[0], "Mul")
    if gamma_mul is scale_mul:
        gamma_mul, gamma = None, None
    else:
        if gamma_mul is None or gamma_mul.output[0] not in scale_mul.input:
            return None
        gamma = _constant(_other(gamma_mul, reciprocal.output[0]), initializers, producers)
        if gamma is None:
            return None
    add_beta = _only(consumers, scale_mul.output[0], "Add")
    beta = None if add_beta is None else _constant(_other(add_beta, scale_mul.output[0]), initializers, producers)
    if beta is None:
        add_beta = None
    channels = (gamma if gamma is not None else beta if beta is not None else None)
    if channels is None:
        return None  # neither parameter left to tell the channel count
    channels = channels.size
    gamma = np.ones(channels, np.float32) if gamma is None else gamma.reshape(-1)
    beta = np.zeros(channels, np.float32) if beta is None else beta.reshape(-1)
    if gamma.shape != (channels,) or beta.shape != (channels,):
        return None
    chain += [n for n in (sub, square, var_pool, add_eps, sqrt, reciprocal, gamma_mul, scale_mul, add_beta) if n]
    output = (add_beta or scale_mul).output[0]
    return chain, x, output, float(np.asarray(epsilon).reshape(())), gamma, beta


def fuse_instance_norm(proto) -> int:
    """Replace every decomposed instance norm in `proto` (in place) by one InstanceNormalization; return how many."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    producers, consumers, initializers = _graph_index(graph)
    fused, removed = 0, set()
    replacements = {}
    for node in list(graph.node):
        if node.op_type != "GlobalAveragePool" or id(node) in removed:
            continue
        found = _match(node, producers, consumers, initializers)
        if found is None:
            continue
        chain, x, output, epsilon, gamma, beta = found
        name = f"keras_dkg_instance_norm_{fused}"
        graph.initializer.extend([numpy_helper.from_array(gamma.astype(np.float32), f"{name}_scale"),
                                  numpy_helper.from_array(beta.astype(np.float32), f"{name}_bias")])
        replacements[id(chain[-1])] = helper.make_node("InstanceNormalization", [x, f"{name}_scale", f"{name}_bias"],
                                                       [output], name=name, epsilon=epsilon)
        removed.update(id(n) for n in chain)
        fused += 1
    if fused:
        kept = []
        for node in graph.node:
            if id(node) in replacements:
                kept.append(replacements[id(node)])
            elif id(node) not in removed:
                kept.append(node)
        del graph.node[:]
        graph.node.extend(kept)
        _drop_unused_initializers(graph)
    return fused


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
