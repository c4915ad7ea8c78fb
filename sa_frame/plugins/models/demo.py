"""`demo-cnn`: a small CNN trained on the embedded demo set by scripts/train_demo.py.

Its weights ship inside the package (weights/demo_cnn.pt); ``--weights imagenet`` (the
default) loads them for this model — they are its pretrained weights, trained on the
demo images, not on ImageNet.
"""

from __future__ import annotations

from importlib import resources

import torch
from torch import nn

from sa_frame import Model, UsageError, lookup

WEIGHTS_FILE = "demo_cnn.pt"


class DemoCNN(nn.Module):
    """4 conv layers (16-32-64-64 channels) on 64x64 images, global average pool, linear."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class DemoModel(Model):
    name = "demo-cnn"
    description = "small CNN trained on the embedded demo images (64x64, 10 classes)"
    checkpoints = ["features.2", "features.5", "features.8", "features.10", "avgpool", "fc"]
    classifier = "fc"
    input_size = (64, 64)
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    @property
    def class_names(self) -> list[str]:
        return lookup("data_source", "demo").open("demo", self.input_format()).classes

    def build_module(self, pretrained: bool) -> nn.Module:
        module = DemoCNN()
        if pretrained:
            path = resources.files("sa_frame.plugins.models") / "weights" / WEIGHTS_FILE
            if not path.is_file():
                raise UsageError(f"demo-cnn weights are missing ({path}); run `python scripts/train_demo.py`")
            with resources.as_file(path) as file:
                module.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        return module
