"""sa-frame: which parts of a network react to which changes of its input, and how much.

The names below are the public API: everything a user or a plugin author imports. Heavy
ones are imported on first use so that ``import sa_frame`` (and the ``sa-frame``
command) stays fast. Plugins import from here, never from ``sa_frame.core.*`` or
``sa_frame.engine.*`` modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sa_frame._version import __version__
from sa_frame.core.hookspecs import hookimpl

_LAZY = {
    # sensitivity-analysis variables and problems
    "Problem": "sa_frame.core.problem",
    **{name: "sa_frame.core.variables" for name in ("Variable", "Block")},
    **{name: "sa_frame.engine.laws" for name in (
        "Uniform", "Switch", "Categorical", "SpikeAndSlab", "LogUniform", "IntUniform", "Constant", "MultivariateNormal")},
    # plugin base types and their options
    "Model": "sa_frame.core.model",
    "load_state_dict_file": "sa_frame.core.model",
    "Augmentation": "sa_frame.core.augmentation",
    "DataSource": "sa_frame.core.data",
    "ImageSet": "sa_frame.core.data",
    "InputFormat": "sa_frame.core.data",
    "read_image": "sa_frame.engine.images",
    "prepare_image": "sa_frame.engine.images",
    "Design": "sa_frame.core.estimator",
    "DesignBlock": "sa_frame.core.estimator",
    "Accumulator": "sa_frame.core.estimator",
    "Estimator": "sa_frame.core.estimator",
    "ACC_DTYPE": "sa_frame.core.estimator",
    "Segmenter": "sa_frame.core.regions",
    "Perturbation": "sa_frame.core.regions",
    "Relevance": "sa_frame.core.relevance",
    "RelevanceContext": "sa_frame.core.relevance",
    **{name: "sa_frame.core.influence" for name in ("IhvpSolver", "Curvature", "SolveReport", "NotConverged")},
    "Analysis": "sa_frame.core.analysis",
    "Progress": "sa_frame.core.analysis",
    "no_progress": "sa_frame.core.analysis",
    "option": "sa_frame.core.options",
    "NoOptions": "sa_frame.core.options",
    # errors
    "UsageError": "sa_frame.core.errors",
    "PluginError": "sa_frame.core.errors",
    "unknown_name": "sa_frame.core.errors",
    "closest": "sa_frame.core.errors",
    "did_you_mean": "sa_frame.core.errors",
    "yaml_error": "sa_frame.core.errors",
    # the registry
    "registered": "sa_frame.core.registry",
    "lookup": "sa_frame.core.registry",
    "registry": "sa_frame.core.registry",
    # running: the Python API, forward hooks, augmentation chains, rebuilding a finished run
    "run": "sa_frame.engine.api",
    "open_results": "sa_frame.engine.api",
    "Results": "sa_frame.engine.results_view",
    "estimate": "sa_frame.engine.estimate",
    "sobol_from_outputs": "sa_frame.engine.estimate",
    "problem_from_salib": "sa_frame.engine.estimate",
    "Capture": "sa_frame.engine.capture",
    "Masking": "sa_frame.engine.capture",
    "StackedMasking": "sa_frame.engine.capture",
    # step-wise sensitivity on tensors: relevance maps of any model, dependency graphs
    "relevance_maps": "sa_frame.engine.relevance_api",
    "dependency_graph": "sa_frame.engine.dependency_graph",
    "Graph": "sa_frame.engine.dependency_graph",
    "split_pair": "sa_frame.engine.dependency_graph",
    # influence functions on tensors: parameter blocks, curvature operators, scores of any classifier
    "influence": "sa_frame.engine.influence",
    "InfluenceResult": "sa_frame.engine.influence",
    "InfluenceConfig": "sa_frame.engine.influence_run",
    "execute_influence": "sa_frame.engine.influence_run",
    "InfluenceImages": "sa_frame.engine.influence_run",
    "same_class_share": "sa_frame.results.influence_report",
    "ProgressBars": "sa_frame.cli.console",
    **{name: "sa_frame.engine.parameter_blocks" for name in (
        "ParameterBlock", "parameter_blocks", "BlockCurvature", "NetworkFunctions")},
    "ForwardHooks": "sa_frame.engine.capture",
    "mask_factor": "sa_frame.engine.capture",
    "resolve_modules": "sa_frame.engine.capture",
    "AugmentationChain": "sa_frame.engine.chain",
    "Permutation": "sa_frame.engine.order",
    "resolve_augmentations": "sa_frame.engine.chain",
    "rebuild": "sa_frame.engine.rebuild",
    "read_yaml_file": "sa_frame.engine.config",
    "Rebuilt": "sa_frame.engine.rebuild",
    # results files, the maps as analyses read them, figures
    "ResultsFile": "sa_frame.results.store",
    "save_figure": "sa_frame.results.report",
    "pyplot": "sa_frame.results.report",
    "dendrogram_figure": "sa_frame.results.report",
    "print_matrix": "sa_frame.results.report",
    "flat_clusters": "sa_frame.results.clusters",
    "print_influence_summary": "sa_frame.results.influence_report",
}
_MODULES = {"maps": "sa_frame.results.maps", "testing": "sa_frame.testing"}

__all__ = ["__version__", "hookimpl", *_LAZY, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
    elif name in _MODULES:
        value = import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'sa_frame' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
