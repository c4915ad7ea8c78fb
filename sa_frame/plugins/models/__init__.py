"""Built-in models: torchvision classifiers (AlexNet, VGG11, ResNet18 with the paper's
checkpoints, and every other torchvision classification model), any timm model as
``timm/<name>``, and the embedded `demo-cnn`.

Implementation modules are imported inside the hooks, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sa_frame import hookimpl


@hookimpl
def register_models(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.models.demo import DemoModel
    from sa_frame.plugins.models.efficientnet_lite import EfficientNetLite0
    from sa_frame.plugins.models.timm_models import TimmFamily
    from sa_frame.plugins.models.torchvision_models import TorchvisionModel, classification_model_names

    register(DemoModel())
    for name in classification_model_names():
        register(TorchvisionModel(name))
    register(TimmFamily())
    register(EfficientNetLite0())


@hookimpl
def register_checkpoints(register: Callable[[str, list[str]], None]) -> None:
    from sa_frame.plugins.models.torchvision_models import PAPER_CHECKPOINTS

    for model, names in PAPER_CHECKPOINTS.items():
        register(model, names)
    register("demo-cnn", ["features.2", "features.5", "features.8", "features.10", "avgpool", "fc"])
