"""Graph rewrites after tf2onnx that onnxruntime runs faster, the same arithmetic.

tf2onnx writes our `InstanceNormalization` layer (networks.py: mean/variance ops) as ten
nodes per norm in NCHW: GlobalAveragePool → [Reshape] → Sub → Mul(c, c) → GlobalAveragePool
→ Add(eps) → Sqrt → Reciprocal → Mul(γ) → Mul → Add(β). `fuse_instance_norm` replaces each
such chain (tf2onnx drops the Mul(γ) of a γ of ones and the Add(β) of a β of zeros) with
one ONNX `InstanceNormalization(x, γ, β, epsilon)` node, which
onnxruntime runs as one kernel. The parity check of the export (export/parity.py) still
compares the rewritten graph with Keras, so a rewrite that changed a key is refused.

tf2onnx writes Keras' `Conv2DTranspose(3, strides=2, padding="same")` as a ConvTranspose
without pads (output 2H+1) followed by a Slice and a Pad whose bounds a Shape/Gather/Div/
Max subgraph computes at run time from the requested output size 2H: start (2H+1-2H)//2 = 0,
end 2H, pad max(2H-(2H+1), 0) = 0, for every H and W. `fold_transpose_crop` writes that
as the ConvTranspose's own `pads` (0 before, 1 after) and drops the Slice, the Pad and the
subgraph (147 → 69 nodes in the 6-block generator), the same arithmetic bit for bit.
`transpose_as_depth_to_space` (a benchmark variant, not exported: it was not faster)
rewrites that ConvTranspose as a 2×2 Conv to 4× the channels + DepthToSpace.

`dkg-export onnx` applies `optimize` (both of the first two). Speed: docs/performance.md.
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
    fused, changes = 0, {}
    for node in list(graph.node):
        if node.op_type != "GlobalAveragePool" or id(node) in changes:
            continue
        found = _match(node, producers, consumers, initializers)
        if found is None:
            continue
        chain, x, output, epsilon, gamma, beta = found
        name = f"keras_dkg_instance_norm_{fused}"
        graph.initializer.extend([numpy_helper.from_array(gamma.astype(np.float32), f"{name}_scale"),
                                  numpy_helper.from_array(beta.astype(np.float32), f"{name}_bias")])
        changes.update({id(n): [] for n in chain})
        changes[id(chain[-1])] = [helper.make_node("InstanceNormalization", [x, f"{name}_scale", f"{name}_bias"],
                                                   [output], name=name, epsilon=epsilon)]
        fused += 1
    if fused:
        _rewrite_nodes(graph, changes)
        _drop_unused_initializers(graph)
    return fused


def _rewrite_nodes(graph, changes: dict[int, list]) -> None:
    """Put `changes[id(node)]` (new nodes, or [] to drop it) in each changed node's place, in order."""
    nodes = [new for node in graph.node for new in changes.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _stride2_3x3(attributes: dict) -> bool:
    return list(attributes.get("kernel_shape", [])) == [3, 3] and list(attributes.get("strides", [])) == [2, 2]


def _crop_after(transpose, consumers):
    """(Slice, Pad) of tf2onnx's "same" emulation after a stride-2 3×3 ConvTranspose, or None.

    Only the shape tf2onnx writes for Keras' layer: no pads or output shape of its own, the
    output read by one Slice (data input) and otherwise only by Shape nodes, the Slice by one
    constant-mode Pad. For that kernel and stride the crop is one row and column at the end.
    """
    attributes = _attributes(transpose)
    if (not _stride2_3x3(attributes) or any(v != 1 for v in attributes.get("dilations", [1, 1])) or attributes.get("group", 1) != 1
            or any(key in attributes for key in ("pads", "output_padding", "output_shape"))
            or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return None
    users = consumers.get(transpose.output[0], [])
    slices = [n for n in users if n.op_type == "Slice"]
    if len(slices) != 1 or slices[0].input[0] != transpose.output[0] or any(
            n.op_type not in ("Slice", "Shape") for n in users):
        return None
    pad = _only(consumers, slices[0].output[0], "Pad")
    if pad is None or pad.input[0] != slices[0].output[0]:
        return None
    if _attributes(pad).get("mode", b"constant") not in (b"constant", "constant"):
        return None
    return slices[0], pad


def fold_transpose_crop(proto) -> int:
    """Give each stride-2 3×3 ConvTranspose its "same" crop as `pads`, dropping Slice + Pad; return how many."""
    from onnx import helper

    graph = proto.graph
    _, consumers, _ = _graph_index(graph)
    changes, folded = {}, 0
    for node in list(graph.node):
        if node.op_type != "ConvTranspose":
            continue
        found = _crop_after(node, consumers)
        if found is None:
            continue
        slice_node, pad_node = found
        node.attribute.append(helper.make_attribute("pads", [0, 0, 1, 1]))
        node.output[0] = pad_node.output[0]  # its readers now read the ConvTranspose
        changes.update({id(slice_node): [], id(pad_node): []})
        folded += 1
    if folded:
        _rewrite_nodes(graph, changes)
        _drop_dead_nodes(graph)
    return folded


def transpose_as_depth_to_space(proto) -> int:
    """Each ConvTranspose(3×3, stride 2, pads 0,0,1,1) as Conv(2×2, 4·C out) + DepthToSpace(2); return how many.

    Output pixel (2m+a, 2n+b) of the transposed convolution sums input (m-1+ty, n-1+tx)
    times kernel tap (r(a,ty), r(b,tx)) with r(0,0)=2, r(0,1)=0, r(1,1)=1 (r(1,0): no tap),
    so phase (a,b) is a 2×2 convolution; DepthToSpace (DCR) interleaves the four phases.
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    _, _, initializers = _graph_index(graph)
    taps = {(0, 0): 2, (0, 1): 0, (1, 1): 1}
    replaced, changes = 0, {}
    for node in graph.node:
        attributes = _attributes(node)
        if (node.op_type != "ConvTranspose" or list(attributes.get("pads", [])) != [0, 0, 1, 1]
                or not _stride2_3x3(attributes) or len(node.input) != 2 or node.input[1] not in initializers):
            continue
        weights = numpy_helper.to_array(initializers[node.input[1]])  # C_in, C_out, 3, 3
        c_in, c_out = weights.shape[:2]
        kernel = np.zeros((2, 2, c_out, c_in, 2, 2), np.float32)
        for (a, ty), row in taps.items():
            for (b, tx), col in taps.items():
                kernel[a, b, :, :, ty, tx] = weights[:, :, row, col].T
        name = f"keras_dkg_depth_to_space_{replaced}"
        graph.initializer.append(numpy_helper.from_array(kernel.reshape(4 * c_out, c_in, 2, 2), f"{name}_kernel"))
        changes[id(node)] = [
            helper.make_node("Conv", [node.input[0], f"{name}_kernel"], [f"{name}_phases"], name=f"{name}_conv",
                             kernel_shape=[2, 2], pads=[1, 1, 0, 0], strides=[1, 1]),
            helper.make_node("DepthToSpace", [f"{name}_phases"], list(node.output), name=name, blocksize=2,
                             mode="DCR")]
        replaced += 1
    if replaced:
        _rewrite_nodes(graph, changes)
        _drop_unused_initializers(graph)
    return replaced


def optimize(proto) -> dict:
    """The rewrites `dkg-export onnx` applies, in place; how many of each."""
    return {"instance_norms_fused": fuse_instance_norm(proto), "transpose_crops_folded": fold_transpose_crop(proto)}


def _drop_dead_nodes(graph) -> None:
    """Nodes none of whose outputs is read (the crop's shape arithmetic), then unused initializers."""
    while True:
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        live = [node for node in graph.node if any(name in read for name in node.output)]
        if len(live) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(live)
    _drop_unused_initializers(graph)


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
