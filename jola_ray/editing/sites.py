"""Where the attention heads are: the output projection of each decoder layer's attention.

Every head-edit method here acts on the input of the attention output projection, the
concatenation of the H per-head context vectors ``z`` (each ``head_dim`` wide) just before
``W_O``. The sites are found generically, not from a list of architectures: the first
``nn.ModuleList`` of decoder layers whose members have ``self_attn.o_proj`` (or
``self_attn.dense``), with the number of heads from the text config's ``num_attention_heads``,
``head_dim`` from ``config.head_dim`` (or ``hidden_size / num_attention_heads``), and the check
that the projection's ``in_features`` equals ``num_heads * head_dim``. ``in_features`` is read
rather than ``weight.shape`` so 4-bit bitsandbytes layers (packed weights) work too.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from jola_ray.errors import UnsupportedModelError

# (attention attribute, projection attribute) tried on each decoder layer, in order. Only the
# first pair is tested on every tiny architecture; the second covers older Phi-style models.
_PROJECTION_NAMES = (("self_attn", "o_proj"), ("self_attn", "dense"))


@dataclass(frozen=True)
class HeadSite:
    """One decoder layer's attention output projection and the geometry of its input."""

    layer: int
    o_proj: nn.Module
    num_heads: int
    head_dim: int
    path: str = ""


@dataclass(frozen=True)
class HeadGeometry:
    """The head layout shared by every site of a model (what an edit file must match)."""

    num_layers: int
    num_heads: int
    head_dim: int
    model_type: str

    @property
    def total_heads(self) -> int:
        return self.num_layers * self.num_heads


def text_config(config):
    """The decoder's config (multimodal configs nest it; plain LM configs are their own)."""
    getter = getattr(config, "get_text_config", None)
    return getter() if getter is not None else config


def model_type_of(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    if config is None:
        return type(model).__name__
    return str(getattr(text_config(config), "model_type", None) or type(model).__name__)


def _projection(layer: nn.Module) -> tuple[str, nn.Module] | None:
    for attn_name, proj_name in _PROJECTION_NAMES:
        attn = getattr(layer, attn_name, None)
        proj = getattr(attn, proj_name, None) if attn is not None else None
        if isinstance(proj, nn.Module) and hasattr(proj, "in_features"):
            return f"{attn_name}.{proj_name}", proj
    return None


def _decoder_layers(model: nn.Module, num_layers: int | None) -> tuple[str, nn.ModuleList] | None:
    """The layer list whose every member has an attention output projection.

    Prefers a list whose length is the config's ``num_hidden_layers`` (a multimodal model may
    also hold a vision tower's layer list).
    """
    candidates = []
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) > 0
            and all(_projection(layer) is not None for layer in module)
        ):
            candidates.append((name, module))
    if not candidates:
        return None
    for name, module in candidates:
        if num_layers is not None and len(module) == num_layers:
            return name, module
    return candidates[0]


def find_head_sites(model: nn.Module) -> list[HeadSite]:
    """One ``HeadSite`` per decoder layer, in layer order.

    Raises ``UnsupportedModelError`` naming the model type and what could not be found when the
    model has no decoder-layer list with an attention output projection, no head count in its
    config, or a projection whose input is not ``num_heads * head_dim`` wide.
    """
    model_type = model_type_of(model)
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedModelError(
            f"cannot edit {model_type}: it has no `config` (a Hugging Face model is expected)"
        )
    tcfg = text_config(config)
    found = _decoder_layers(model, getattr(tcfg, "num_hidden_layers", None))
    if found is None:
        wanted = " or ".join(f"`<layers>[i].{a}.{p}`" for a, p in _PROJECTION_NAMES)
        raise UnsupportedModelError(
            f"cannot edit model type {model_type!r} ({type(model).__name__}): found no list of "
            f"decoder layers with an attention output projection ({wanted}); head edits need "
            "the projection over the concatenated attention heads"
        )
    list_name, layers = found
    num_heads = getattr(tcfg, "num_attention_heads", None)
    if not isinstance(num_heads, int) or num_heads <= 0:
        raise UnsupportedModelError(
            f"cannot edit model type {model_type!r}: its config has no `num_attention_heads` "
            f"(got {num_heads!r})"
        )
    head_dim = getattr(tcfg, "head_dim", None)
    if head_dim is None:
        hidden = getattr(tcfg, "hidden_size", None)
        if not isinstance(hidden, int) or hidden % num_heads:
            raise UnsupportedModelError(
                f"cannot edit model type {model_type!r}: its config has no `head_dim` and "
                f"hidden_size={hidden!r} is not a multiple of num_attention_heads={num_heads}"
            )
        head_dim = hidden // num_heads
    sites = []
    for index, layer in enumerate(layers):
        proj_name, proj = _projection(layer)
        path = f"{list_name}.{index}.{proj_name}"
        in_features = int(proj.in_features)
        if in_features != num_heads * head_dim:
            raise UnsupportedModelError(
                f"cannot edit model type {model_type!r}: {path} takes {in_features} input "
                f"features, not num_attention_heads * head_dim = {num_heads} * {head_dim} = "
                f"{num_heads * head_dim}; its input is not the concatenation of the heads"
            )
        sites.append(HeadSite(index, proj, num_heads, int(head_dim), path))
    return sites


def geometry_of(model: nn.Module, sites: list[HeadSite]) -> HeadGeometry:
    return HeadGeometry(len(sites), sites[0].num_heads, sites[0].head_dim, model_type_of(model))


# --- Sites beyond the head outputs: linear layers, FFN outputs, the residual stream ----------
#
# Every site below hangs off the same decoder-layer list as the head sites (found generically as
# above, so any architecture with heads has them too). A site names the module a method hooks
# and the width of what flows through it.

# The attribute of a decoder layer that holds its feed-forward block, tried in order.
_FFN_NAMES = ("mlp", "feed_forward", "ffn")


@dataclass(frozen=True)
class LinearSite:
    """One linear projection inside a decoder layer (``self_attn.q_proj``, ``mlp.down_proj``)."""

    layer: int
    name: str  # path inside the decoder layer, e.g. "self_attn.q_proj"
    module: nn.Module
    in_features: int
    out_features: int
    path: str = ""  # full path inside the model


@dataclass(frozen=True)
class LayerSite:
    """A module whose output is ``hidden_size`` wide per token: a layer's FFN block (its output
    before the residual add) or the decoder layer itself (its output is the residual stream)."""

    layer: int
    module: nn.Module
    hidden_size: int
    path: str = ""


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(path, layers)``: the decoder-layer list (the one the head sites are found in).

    Raises ``UnsupportedModelError`` naming the model type when there is none.
    """
    model_type = model_type_of(model)
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedModelError(
            f"cannot edit {model_type}: it has no `config` (a Hugging Face model is expected)"
        )
    found = _decoder_layers(model, getattr(text_config(config), "num_hidden_layers", None))
    if found is None:
        raise UnsupportedModelError(
            f"cannot edit model type {model_type!r} ({type(model).__name__}): found no list of "
            "decoder layers (an nn.ModuleList whose layers have `self_attn.o_proj`)"
        )
    return found


def _is_linear(module: nn.Module) -> bool:
    # in_features/out_features rather than isinstance(nn.Linear): 4-bit bitsandbytes layers too.
    return isinstance(getattr(module, "in_features", None), int) and isinstance(
        getattr(module, "out_features", None), int
    )


def find_linear_sites(
    model: nn.Module,
    targets: list[str] | tuple[str, ...] | None = None,
    layers: list[int] | tuple[int, ...] | None = None,
) -> list[LinearSite]:
    """The linear projections of the decoder layers, in (layer, module) order.

    ``targets`` are the projections' last names (``q_proj``, ``down_proj``, or a Phi-3 fused
    ``qkv_proj``); None takes every linear module inside every decoder layer (the attention and
    MLP projections of any architecture). ``layers`` restricts the layers (None: all). A target
    missing from a layer raises ``UnsupportedModelError`` naming the model type, the target and
    the projections the layer does have.
    """
    list_name, layer_list = decoder_layers(model)
    chosen = _check_layers(model, layers, len(layer_list))
    sites = []
    for index in chosen:
        linears = []
        for n, m in layer_list[index].named_modules():
            # the outermost linear module only: an adapter wrapper (peft) holds the original
            # layer as a linear submodule of its own
            if n and _is_linear(m) and not any(n.startswith(f"{o}.") for o, _ in linears):
                linears.append((n, m))
        if targets is not None:
            have = {n.rsplit(".", 1)[-1] for n, _ in linears}
            missing = [t for t in targets if t not in have]
            if missing:
                raise UnsupportedModelError(
                    f"model type {model_type_of(model)!r} has no linear layer named "
                    f"{', '.join(map(repr, missing))} in decoder layer {index}; its projections "
                    f"are: {', '.join(sorted(have))}"
                )
            linears = [(n, m) for n, m in linears if n.rsplit(".", 1)[-1] in targets]
        for name, module in linears:
            sites.append(
                LinearSite(
                    index,
                    name,
                    module,
                    int(module.in_features),
                    int(module.out_features),
                    f"{list_name}.{index}.{name}",
                )
            )
    return sites


def find_ffn_sites(
    model: nn.Module, layers: list[int] | tuple[int, ...] | None = None
) -> list[LayerSite]:
    """Each chosen decoder layer's feed-forward block (``mlp``, ``feed_forward`` or ``ffn``);
    its output is the FFN's output before the residual add (and before Gemma's post-FFN norm)."""
    list_name, layer_list = decoder_layers(model)
    hidden = hidden_size_of(model)
    sites = []
    for index in _check_layers(model, layers, len(layer_list)):
        for attr in _FFN_NAMES:
            block = getattr(layer_list[index], attr, None)
            if isinstance(block, nn.Module):
                sites.append(LayerSite(index, block, hidden, f"{list_name}.{index}.{attr}"))
                break
        else:
            raise UnsupportedModelError(
                f"model type {model_type_of(model)!r}: decoder layer {index} has no feed-forward "
                f"block (looked for {', '.join(f'`{a}`' for a in _FFN_NAMES)})"
            )
    return sites


def find_residual_sites(
    model: nn.Module, layers: list[int] | tuple[int, ...] | None = None
) -> list[LayerSite]:
    """Each chosen decoder layer; its output (``hidden_states``) is the residual stream after
    the layer, the ``block_output`` of pyreft/pyvene."""
    list_name, layer_list = decoder_layers(model)
    hidden = hidden_size_of(model)
    return [
        LayerSite(index, layer_list[index], hidden, f"{list_name}.{index}")
        for index in _check_layers(model, layers, len(layer_list))
    ]


def hidden_size_of(model: nn.Module) -> int:
    hidden = getattr(text_config(model.config), "hidden_size", None)
    if not isinstance(hidden, int) or hidden <= 0:
        raise UnsupportedModelError(
            f"model type {model_type_of(model)!r}: its config has no `hidden_size` (got {hidden!r})"
        )
    return hidden


def _check_layers(model: nn.Module, layers, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    bad = [i for i in layers if not 0 <= int(i) < num_layers]
    if bad:
        raise UnsupportedModelError(
            f"layers {bad} out of range: model type {model_type_of(model)!r} has {num_layers} "
            f"decoder layers (0..{num_layers - 1})"
        )
    return sorted({int(i) for i in layers})
