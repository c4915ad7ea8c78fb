"""Built-in data sources: the embedded demo set, real photographs, ImageFolder-layout folders.

Implementation modules are imported inside the hook, so loading this plugin is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sa_frame import hookimpl


@hookimpl
def register_data_sources(register: Callable[[Any], None]) -> None:
    from sa_frame.plugins.data.demo import DemoSource
    from sa_frame.plugins.data.folder import FolderSource
    from sa_frame.plugins.data.photos import PhotoSource

    register(DemoSource())
    register(PhotoSource())
    register(FolderSource())
