"""A model, layer by layer: output shape, parameters, receptive field and multiply-accumulates.

The model is built on the meta device and traced with torch.fx, so describing VGG-19 at 224x224
allocates no weights and computes nothing. MACs count the multiply-accumulates of convolutions and
fully connected layers for one image (bias, normalisation, activation and pooling are left out, as
in torchvision's published GFLOPS); FLOPs are 2 x MACs. The receptive field is the side of the input
window one output unit sees, along the widest path through the net; None means the whole input
(after flattening or global pooling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from cnnq.models.registry import build_model, input_variant, model_info


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int
    receptive_field: int | None
    macs: int


@dataclass(frozen=True)
class ModelSummary:
    model: str
    input_shape: tuple[int, int, int]
    num_classes: int
    variant: str
    layers: tuple[LayerRow, ...]
    total_params: int
    trainable_params: int
    macs: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class _Field:
    """Receptive field `size` of a unit and `jump`, the input distance between neighbouring units."""

    size: int
    jump: int


_WHOLE_INPUT = None


def describe_model(name: str, *, in_channels: int, image_size: int, num_classes: int) -> ModelSummary:
    """The named model's summary for one `in_channels` x `image_size` x `image_size` image."""
    info = model_info(name)
    with torch.device("meta"):
        model = build_model(
            info.name, in_channels=in_channels, image_size=image_size, num_classes=num_classes
        )
    input_shape = (in_channels, image_size, image_size)
    rows = tuple(layer_rows(model, input_shape))
    return ModelSummary(
        model=info.name,
        input_shape=input_shape,
        num_classes=num_classes,
        variant=input_variant(info.name, in_channels=in_channels, image_size=image_size),
        layers=rows,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=sum(row.macs for row in rows),
    )


def layer_rows(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRow]:
    """One row per call of a leaf module, in execution order, for a batch of one image."""
    graph = fx.symbolic_trace(model)
    was_training = model.training
    model.eval()
    try:
        outputs = _Recorder(graph).outputs_of(torch.empty(1, *input_shape, device=_device_of(model)))
    finally:
        model.train(was_training)
    fields: dict[fx.Node, _Field | None] = {}
    seen: set[str] = set()
    rows: list[LayerRow] = []
    for node in graph.graph.nodes:
        output = outputs.get(node)
        if node.op == "placeholder":
            fields[node] = _Field(1, 1)
            continue
        inputs = [fields[arg] for arg in node.all_input_nodes if arg in fields]
        if node.op != "call_module":
            fields[node] = _merge(inputs, output)
            continue
        module = graph.get_submodule(str(node.target))
        field = _through(module, inputs[0] if inputs else _WHOLE_INPUT, node.all_input_nodes, outputs, output)
        fields[node] = field
        first_call = str(node.target) not in seen
        seen.add(str(node.target))
        rows.append(
            LayerRow(
                name=str(node.target),
                kind=type(module).__name__,
                output_shape=tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else (),
                params=sum(p.numel() for p in module.parameters()) if first_call else 0,
                receptive_field=field.size if field is not None else None,
                macs=_macs(module, output),
            )
        )
    return rows


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class _Recorder(fx.Interpreter):
    def outputs_of(self, x: torch.Tensor) -> dict[fx.Node, Any]:
        self.outputs: dict[fx.Node, Any] = {}
        with torch.no_grad():
            self.run(x)
        return self.outputs

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.outputs[n] = result
        return result


def _is_map(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 4


def _merge(inputs: list[_Field | None], output: Any) -> _Field | None:
    """A function node (add, cat, flatten...): the widest input field, or the whole input if flattened."""
    if not _is_map(output) or not inputs or any(field is _WHOLE_INPUT for field in inputs):
        return _WHOLE_INPUT
    return max((f for f in inputs if f is not None), key=lambda f: (f.size, f.jump))


def _through(
    module: nn.Module, field: _Field | None, args: list[fx.Node], outputs: dict[fx.Node, Any], output: Any
) -> _Field | None:
    if field is _WHOLE_INPUT or not _is_map(output):
        return _WHOLE_INPUT
    if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        kernel, stride = _first(module.kernel_size), _first(module.stride)
        dilation = _first(getattr(module, "dilation", 1))
        return _Field(field.size + dilation * (kernel - 1) * field.jump, field.jump * stride)
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        size_in, size_out = outputs[args[0]].shape[-1], output.shape[-1]
        if size_out == 1:
            return _WHOLE_INPUT
        stride = size_in // size_out
        kernel = size_in - (size_out - 1) * stride
        return _Field(field.size + (kernel - 1) * field.jump, field.jump * stride)
    return field


def _first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


def _macs(module: nn.Module, output: Any) -> int:
    if not isinstance(output, torch.Tensor):
        return 0
    if isinstance(module, nn.Conv2d):
        kernel_h, kernel_w = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kernel_h * kernel_w
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0
