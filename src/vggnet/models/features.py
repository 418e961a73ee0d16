"""Named intermediate activations, for perceptual losses, style transfer and feature inspection."""

import torch

from .vgg import VGG


def extract_features(model: VGG, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Run `model` on `x` up to the deepest requested layer and return each requested layer's output.

    >>> import torch, vggnet
    >>> model = vggnet.create_model("vgg16", pretrained="imagenet").eval()  # doctest: +SKIP
    >>> model = vggnet.create_model("vgg16", width_mult=0.125).eval()  # 1/8 of the channels, random weights
    >>> images = torch.randn(2, 3, 224, 224)
    >>> feats = vggnet.extract_features(model, images, layers=["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    >>> feats["relu3_3"].shape  # (2, 256, 56, 56) at full width
    torch.Size([2, 32, 56, 56])

    Args:
        model: A VGG.
        x: Input batch (N, in_chans, H, W).
        layers: Canonical layer names (`model.layer_names`), e.g. `["relu1_2", "relu2_2", "relu3_3", "relu4_3"]`.

    Returns:
        The outputs keyed by layer name, in the order of `layers`. Gradients flow through them.
    """
    names = model.layer_names
    if not layers:
        raise ValueError(f"no layers requested; choose from: {', '.join(names)}")
    for name in layers:
        model.get_layer(name)  # raises, naming the closest layer, for a name this model does not have
    model.check_input(x)
    wanted = set(layers)
    all_layers = model.named_layers()
    last = max(names.index(name) for name in layers)
    outputs = {}
    for index, (name, module) in enumerate(all_layers[: last + 1]):
        x = module(x)
        if name in wanted:
            # An in-place layer next (ReLU) would overwrite this tensor, so keep a copy.
            overwritten = index + 1 < len(all_layers) and getattr(all_layers[index + 1][1], "inplace", False)
            outputs[name] = x.clone() if overwritten else x
    return {name: outputs[name] for name in layers}
