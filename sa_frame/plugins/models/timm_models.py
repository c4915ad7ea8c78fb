"""Any timm model as ``timm/<name>``: default checkpoints from its feature info, plus the
pooled features and the head; input size and normalisation from timm's data config."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sa_frame import Model, UsageError, unknown_name
from sa_frame.plugins.models._imagenet import IMAGENET_CLASSES, imagenet_names, imagenet_wnids

PREFIX = "timm/"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_HOST = ("huggingface.co", 443)


def offline_reason(hub_offline: bool) -> str:
    """Why weights cannot be downloaded now ('' when the hub answers): asked before timm tries,
    whose retries take about a minute to fail on a machine without a network."""
    import socket

    if hub_offline:
        return "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection(HUB_HOST, timeout=3).close()
    except OSError as exc:
        return f"{HUB_HOST[0]} is unreachable ({exc.strerror or type(exc).__name__})"
    return ""


class TimmFamily:
    """Resolves ``timm/<name>`` to a model spec (registered as ``timm/*``)."""

    name = PREFIX + "*"
    description = "any timm model: timm/<name> (e.g. timm/resnet18, timm/convnext_tiny)"

    def resolve(self, full_name: str) -> TimmModel:
        import timm

        name = full_name[len(PREFIX):]
        if not timm.is_model(name):
            raise unknown_name("timm model", name, timm.list_models())
        return TimmModel(name)


class TimmModel(Model):
    def __init__(self, name: str) -> None:
        import timm

        self.timm_name = name
        self.name = PREFIX + name
        self.description = f"timm {name}"
        try:
            with torch.device("meta"):
                skeleton = timm.create_model(name, pretrained=False)
        except Exception:  # a few models cannot be initialised on the meta device
            skeleton = timm.create_model(name, pretrained=False)
        config = timm.data.resolve_data_config({}, model=skeleton)
        self.input_size = tuple(config["input_size"][1:])
        self.mean, self.std = tuple(config["mean"]), tuple(config["std"])
        self.crop_pct, self.interpolation = float(config["crop_pct"]), str(config["interpolation"])
        self.num_classes = int(getattr(skeleton, "num_classes", 0) or 0)
        modules = dict(skeleton.named_modules())
        head = skeleton.get_classifier()
        self.classifier = next(n for n, m in modules.items() if m is head) if isinstance(head, nn.Module) and \
            any(m is head for m in modules.values()) else ""
        features = [info["module"] for info in getattr(skeleton, "feature_info", [])]
        pooled = [n for n in modules if n.endswith("global_pool")][:1]
        self.checkpoints = list(dict.fromkeys(features + pooled + ([self.classifier] if self.classifier else [])))
        self.hf_hub_id = (skeleton.pretrained_cfg or {}).get("hf_hub_id")

    @property
    def class_names(self) -> list[str] | None:
        """ImageNet's classes for a 1,000-way head (timm ships their names), else unknown."""
        return imagenet_names() if self.num_classes == IMAGENET_CLASSES else None

    @property
    def class_ids(self) -> list[str] | None:
        return imagenet_wnids() if self.num_classes == IMAGENET_CLASSES else None

    def build_module(self, pretrained: bool) -> nn.Module:
        import timm

        if not pretrained:
            return timm.create_model(self.timm_name, pretrained=False)
        from huggingface_hub import constants, try_to_load_from_cache

        repo = self.hf_hub_id or f"timm/{self.timm_name}"
        cached = any(isinstance(try_to_load_from_cache(repo, file), str) for file in WEIGHT_FILES)
        why = "" if cached else offline_reason(constants.HF_HUB_OFFLINE)
        if not why:
            try:
                return timm.create_model(self.timm_name, pretrained=True)
            except (OSError, RuntimeError, ValueError) as exc:  # huggingface_hub's offline errors are OSErrors
                why = type(exc).__name__
        raise UsageError(f"ImageNet weights for {self.name} are not cached and cannot be downloaded ({why}): on a "
                         f"machine online download https://huggingface.co/{repo}/resolve/main/model.safetensors "
                         f"and give --weights /path/to/model.safetensors, or run `huggingface-cli download {repo}` "
                         f"there and copy its cache into {Path(constants.HF_HUB_CACHE)}; or use --weights random")
