"""The plugin manager and the registry of everything plugins provide.

Built-in plugins (DEFAULT_PLUGINS) are registered exactly like third-party ones, then the entry points of group
``sa_frame`` are loaded. ``SA_FRAME_LOAD_PLUGINS=a,b`` restricts which entry points load (set it to an empty
string to load none; tests do).

Loading is lazy: nothing is imported until the first lookup, and a kind's hook is only called when that kind is
first asked for, so ``sa-frame --help`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from sa_frame._version import __version__
from sa_frame.core import hookspecs
from sa_frame.core.errors import PluginError, unknown_name

DEFAULT_PLUGINS: tuple[str, ...] = (
    "sa_frame.plugins.models",
    "sa_frame.plugins.data",
    "sa_frame.plugins.augmentations",
    "sa_frame.plugins.estimators",
    "sa_frame.plugins.analyses",
    "sa_frame.plugins.regions",
    "sa_frame.plugins.ssa",
    "sa_frame.plugins.influence",
)
ALLOWLIST_ENV = "SA_FRAME_LOAD_PLUGINS"
ENTRY_POINT_GROUP = "sa_frame"

# kind -> hook that registers it; kinds whose register call takes (name, list).
KIND_HOOKS: dict[str, str] = {
    "model": "register_models",
    "checkpoint": "register_checkpoints",
    "data_source": "register_data_sources",
    "augmentation": "register_augmentations",
    "augmentation_set": "register_augmentation_sets",
    "sampler": "register_samplers",
    "estimator": "register_estimators",
    "analysis": "register_analyses",
    "segmenter": "register_segmenters",
    "perturbation": "register_perturbations",
    "relevance": "register_relevances",
    "ihvp": "register_ihvp_solvers",
}
NAMED_LIST_KINDS = frozenset({"checkpoint", "augmentation_set"})
OVERRIDABLE_KINDS = frozenset({"checkpoint"})
FAMILY_SUFFIX = "/*"


@dataclass(frozen=True)
class Registration:
    """One registered thing and who provided it."""

    kind: str
    name: str
    obj: Any
    plugin: str
    provider: str
    version: str
    builtin: bool


@dataclass(frozen=True)
class _Provider:
    plugin: str
    provider: str
    version: str
    builtin: bool


class Registry:
    """Collects registrations per kind (lazily) and answers lookups by name."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._providers: dict[int, _Provider] = {}
        self._kinds: dict[str, dict[str, Registration]] = {}
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            self.add_plugin(module, provider="sa-frame", version=__version__, builtin=True)
        self._load_entry_points()

    # -- plugins -------------------------------------------------------------------
    def add_plugin(self, plugin: Any, provider: str, version: str = "", builtin: bool = False,
                   name: str | None = None) -> None:
        """Register a plugin object or module; forget collected kinds so they refresh."""
        plugin_name = self.pm.register(plugin, name=name)
        self._providers[id(plugin)] = _Provider(plugin_name or repr(plugin), provider, version, builtin)
        self._kinds.clear()

    def remove_plugin(self, plugin: Any) -> None:
        self.pm.unregister(plugin)
        self._providers.pop(id(plugin), None)
        self._kinds.clear()

    def _load_entry_points(self) -> None:
        allow = os.environ.get(ALLOWLIST_ENV)
        allowed = None if allow is None else {a.strip() for a in allow.split(",") if a.strip()}
        found: dict[str, dict[str, Any]] = {}  # name -> {distribution: entry point}; `dist:name` picks one
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else ep.name
            if allowed is None or ep.name in allowed or f"{dist}:{ep.name}" in allowed:
                found.setdefault(ep.name, {})[dist] = ep
        for name, per_dist in found.items():  # checked before any plugin's code runs
            if len(per_dist) > 1:
                raise PluginError(f"plugins {name!r} of {' and '.join(sorted(per_dist))}: allow one as "
                                  f"{ALLOWLIST_ENV}=DISTRIBUTION:{name}")
        for dist, ep in (next(iter(d.items())) for d in found.values()):
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not kill the CLI
                raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            self.add_plugin(plugin, provider=dist, version=ep.dist.version if ep.dist else "", name=ep.name)

    # -- registrations ------------------------------------------------------------
    def entries(self, kind: str) -> dict[str, Registration]:
        """All registrations of one kind, name -> Registration (collected on first use)."""
        if kind not in KIND_HOOKS:
            raise unknown_name("plugin kind", kind, KIND_HOOKS)
        if kind not in self._kinds:
            self._kinds[kind] = self._collect(kind)
        return self._kinds[kind]

    def _collect(self, kind: str) -> dict[str, Registration]:
        found: dict[str, Registration] = {}
        caller = getattr(self.pm.hook, KIND_HOOKS[kind])
        # Registration order (built-ins first), so that a later plugin can override.
        for impl in caller.get_hookimpls():
            who = self._providers.get(id(impl.plugin)) or _Provider(impl.plugin_name, impl.plugin_name, "", False)
            impl.function(register=self._register_callback(kind, found, who))
        return found

    def _register_callback(self, kind: str, found: dict[str, Registration],
                           who: _Provider) -> Callable[..., None]:
        def register(obj: Any, names: list[str] | None = None) -> None:
            if kind in NAMED_LIST_KINDS:
                if names is None:
                    raise PluginError(f"plugin {who.plugin!r}: register({obj!r}, [names]) needs a list for kind {kind!r}")
                name, value = str(obj), list(names)
            else:
                name = getattr(obj, "name", None)
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {who.plugin!r} registered a {kind} without a string `name`: {obj!r}")
                value = obj
            previous = found.get(name)
            if previous is not None and kind not in OVERRIDABLE_KINDS:
                raise PluginError(
                    f"{kind} {name!r} is registered twice: by {previous.provider} ({previous.plugin}) "
                    f"and by {who.provider} ({who.plugin})")
            found[name] = Registration(kind, name, value, who.plugin, who.provider, who.version, who.builtin)
        return register

    def get(self, kind: str, name: str) -> Any:
        """The object registered as `name`, or a family's resolution of it; else UsageError."""
        entries = self.entries(kind)
        if name in entries:
            return entries[name].obj
        for family_name, reg in entries.items():
            if family_name.endswith(FAMILY_SUFFIX) and name.startswith(family_name[:-1]):
                return reg.obj.resolve(name)
        raise unknown_name(kind.replace("_", " "), name, entries)

    def commands(self, app: Any) -> None:
        self.pm.hook.register_commands(app=app)


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry (created on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the registry so the next lookup reloads plugins (tests, env changes)."""
    global _REGISTRY
    _REGISTRY = None


def registered(kind: str) -> dict[str, Any]:
    """`{name: plugin object}` for one kind: model, checkpoint, data_source, augmentation,
    augmentation_set, sampler, estimator, analysis, segmenter, perturbation, relevance or ihvp."""
    return {name: reg.obj for name, reg in registry().entries(kind).items()}


def lookup(kind: str, name: str) -> Any:
    """The registered object of `kind` called `name` (UsageError naming the closest)."""
    return registry().get(kind, name)

