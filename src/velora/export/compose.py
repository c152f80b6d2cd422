"""One ONNX graph from the graphs of a model's modality cases, the case chosen by which inputs hold frames.

A model trained on RGB + events computes three different graphs: both streams, RGB alone, events
alone (a missing stream is skipped, not fed zeros: velora.model.velora). Each is exported on its
own (velora.export.onnx); here they become the branches of If nodes in one graph with inputs `rgb`
and `events`:

    has_rgb = Size(rgb) > 0                 a missing sensor is an empty array, (0, T, 3, S, S)
    has_events = Size(events) > 0
    logits = If(has_rgb, then: If(has_events, then: both, else: RGB alone), else: events alone)

Weights the branches share are stored once: initializers equal in type, shape and bytes become one
initializer of the outer graph, which each branch reads from the outer scope. Every other name of
a branch gets the branch's name as a prefix, so no branch shadows another's values.
"""

from __future__ import annotations

import hashlib

import onnx
from onnx import TensorProto, helper, numpy_helper

# The If tree over the presence flags of the inputs, for each set of present inputs.
BOTH, RGB, EVENTS = ("rgb", "events"), ("rgb",), ("events",)


def combine_cases(cases: dict[tuple[str, ...], onnx.ModelProto]) -> onnx.ModelProto:
    """The model whose graph runs `cases[BOTH]`, `cases[RGB]` or `cases[EVENTS]` as the inputs
    `rgb` and `events` are non-empty; each case's graph has the inputs it names and one output.
    The cases' graphs are taken apart (renamed in place)."""
    assert set(cases) == {BOTH, RGB, EVENTS}, sorted(cases)
    inputs = [copy(value) for value in cases[BOTH].graph.input]  # rgb, events
    output = copy(cases[BOTH].graph.output[0])  # logits
    shared: dict[tuple, onnx.TensorProto] = {}  # (type, dims, bytes digest) -> the outer initializer
    names: set[str] = set()
    branches: dict[tuple[str, ...], onnx.GraphProto] = {}
    functions: dict[tuple[str, str, str], onnx.FunctionProto] = {}
    for keys, model in cases.items():
        graph = model.graph
        assert not graph.sparse_initializer, "sparse initializers are not combined"
        to_outer = {}
        for tensor in graph.initializer:
            digest = hashlib.sha256(numpy_helper.to_array(tensor).tobytes()).hexdigest()
            key = (tensor.data_type, tuple(tensor.dims), digest)
            if key not in shared:
                outer = onnx.TensorProto()
                outer.CopyFrom(tensor)
                while outer.name in names:  # another tensor of that name already
                    outer.name += "_"
                names.add(outer.name)
                shared[key] = outer
            to_outer[tensor.name] = shared[key].name
        branch = "+".join(keys)
        rename_values(graph, prefix=f"{branch}/", keep=set(keys), renamed=to_outer)
        branches[keys] = helper.make_graph(
            list(graph.node), branch, [], list(graph.output), value_info=list(graph.value_info)
        )
        for function in model.functions:
            functions.setdefault((function.domain, function.name, function.overload), function)

    nodes = []
    for name in ("rgb", "events"):
        nodes += [
            helper.make_node("Size", [name], [f"{name}_size"], name=f"size_{name}"),
            helper.make_node("Greater", [f"{name}_size", "zero"], [f"has_{name}"], name=f"has_{name}"),
        ]
    inner = helper.make_node(
        "If",
        ["has_events"],
        ["rgb_present_logits"],
        name="if_events",
        then_branch=branches[BOTH],
        else_branch=branches[RGB],
    )
    rgb_present = helper.make_graph(
        [inner], "rgb_present", [], [helper.make_tensor_value_info("rgb_present_logits", TensorProto.FLOAT, None)]
    )
    nodes.append(
        helper.make_node(
            "If", ["has_rgb"], [output.name], name="if_rgb", then_branch=rgb_present, else_branch=branches[EVENTS]
        )
    )
    zero = helper.make_tensor("zero", TensorProto.INT64, [], [0])
    graph = helper.make_graph(nodes, "velora", inputs, [output], initializer=[zero, *shared.values()])
    first = cases[BOTH]
    model = helper.make_model(
        graph, opset_imports=list(first.opset_import), ir_version=first.ir_version, functions=list(functions.values())
    )
    onnx.checker.check_model(model)
    return model


def copy(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(value)
    return out


def rename_values(graph: onnx.GraphProto, *, prefix: str, keep: set[str], renamed: dict[str, str]) -> None:
    """Rename every value of `graph` (and of graphs inside its nodes) in place: `renamed` maps
    some names, `keep` stays, every other name gets `prefix`."""

    def new(name: str) -> str:
        if not name or name in keep:
            return name
        return renamed.get(name, prefix + name)

    for node in graph.node:
        node.input[:] = [new(n) for n in node.input]
        node.output[:] = [new(n) for n in node.output]
        node.name = prefix + node.name
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs:
                rename_values(sub, prefix=prefix, keep=keep, renamed=renamed)
    for value in [*graph.input, *graph.value_info, *graph.output, *graph.initializer]:
        value.name = new(value.name)
