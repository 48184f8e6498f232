"""The package's shape (docs/architecture.md): a torch-only core that imports none of diffusers,
open_clip, transformers or peft; adapters that hold the core pieces; layers whose imports point
only down; and a backbone registry whose entries keep their protocol."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

#: modules that extend core classes with diffusers, open_clip or peft (and the class paths older
#: saved folders record, which import them); every other module is core
ADAPTERS = ("uir.models", "uir.router", "uir.lora.bank", "uir.pipelines.base", "uir.pipelines.regression",
            "uir.pipelines.uir_lora")
#: the research ports, built on the adapters
RESEARCH = ("uir.lira", "uir.dlnet", "uir.dte", "uir.grids")
HEAVY = ("diffusers", "open_clip", "transformers", "peft")

#: the layers, top first; a module belongs to the first layer with a matching prefix, and may
#: import only from its own layer or those below
FRONT_DOOR = ("uir.__main__", "uir.cli", "uir.commands")
LAYERS = [
    ("front door", FRONT_DOOR),
    ("loading, training, tools", ("uir.pipelines.loading", "uir.training", "uir.testing", "uir.benchmarking")),
    ("pipelines", ("uir.pipelines",)),
    ("adapters and research ports", ADAPTERS + RESEARCH),
    ("core", ("uir",)),
]


def _module_names() -> dict[str, Path]:
    names = {}
    for path in sorted((ROOT / "uir").rglob("*.py")) + sorted((ROOT / "pipelines").glob("*.py")):
        if "assets" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "pipelines":
            parts = ["uir", *parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _matches(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _layer(module: str) -> int:
    return next(i for i, (_, prefixes) in enumerate(LAYERS) if _matches(module, prefixes))


def _imports(module: str, path: Path, known: dict) -> set[str]:
    """The uir modules ``module`` imports anywhere in its file (function-level imports too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("uir"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("uir"):
                found.update(f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names)
    return found - {module}


def test_every_import_points_down_the_layers():
    known = _module_names()
    upward = [f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
              for module, path in known.items() for target in sorted(_imports(module, path, known))
              if target != "uir" and _layer(target) < _layer(module)]
    assert not upward, "\n".join(upward)


def test_training_never_imports_the_command_line():
    known = _module_names()
    for module, path in known.items():
        if _matches(module, ("uir.training",)):
            assert not any(_matches(t, FRONT_DOOR) for t in _imports(module, path, known)), module


def test_core_modules_import_none_of_diffusers_open_clip_transformers_or_peft():
    core = sorted(m for m in _module_names() if not _matches(m, ADAPTERS + RESEARCH))
    assert {"uir.lora", "uir.networks.router", "uir.pipelines.runtime", "uir.pipelines.loading", "uir.cli"} <= set(core)
    probe = ("import importlib, sys\n"
             f"for name in {core!r}:\n"
             "    importlib.import_module(name)\n"
             f"    heavy = [h for h in {HEAVY!r} if h in sys.modules]\n"
             "    if heavy:\n"
             "        print(name, 'imports', ', '.join(heavy)); break\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", result.stdout


def test_adapters_extend_the_core_classes():
    """One mechanism: each diffusers-side class is its core class plus diffusers' mixins."""
    from diffusers import DiffusionPipeline, ModelMixin

    from uir.lora import ExpertList
    from uir.models import NAFNet
    from uir.models.experts import ExpertListModel
    from uir.models.router import DegradationRouter
    from uir.networks import nafnet
    from uir.networks.router import RouterInference
    from uir.pipelines import RestorerPipeline
    from uir.pipelines.restoring import RestorerRestoration

    for adapter, core, mixin in [(NAFNet, nafnet.NAFNet, ModelMixin), (ExpertListModel, ExpertList, ModelMixin),
                                 (DegradationRouter, RouterInference, ModelMixin),
                                 (RestorerPipeline, RestorerRestoration, DiffusionPipeline)]:
        assert issubclass(adapter, core) and issubclass(adapter, mixin), adapter


def test_registered_backbones_keep_their_protocol():
    from uir.backbones import BACKBONES, FEATURES, require

    assert {"nafnet", "srresnet", "lira"} <= set(BACKBONES)
    for name, spec in BACKBONES.items():
        model = spec.build(width=8).eval()
        multiple = require(model, "size_multiple")
        x = torch.rand(1, 3, 4 * max(multiple, 4), 4 * max(multiple, 4))
        with torch.no_grad():
            assert model(x).shape == x.shape, name
        modules = dict(model.named_modules())
        for attribute in FEATURES:
            value = getattr(model, attribute, None)
            if attribute == "expert_targets" and value:
                assert all(any(n.endswith(t) for n in modules) for t in value), (name, attribute)
            elif attribute == "dlnet_split" and value:
                assert value in modules, (name, value)
            elif attribute == "time_condition_blocks" and value:
                assert set(value) <= set(modules), (name, value)


def test_a_missing_protocol_attribute_names_the_backbone_and_the_feature():
    from uir.backbones import get_backbone, require

    lira = get_backbone("lira").build(width=8)
    with pytest.raises(AttributeError, match="LIRANetwork has no dlnet_split, which DL-Net needs"):
        require(lira, "dlnet_split")
    with pytest.raises(ValueError, match="unknown backbone 'unet'; registered: lira, nafnet, srresnet"):
        get_backbone("unet")


def test_the_runtime_builds_a_backbone_through_its_registered_twin():
    from uir.backbones import runtime_network
    from uir.networks import nafnet

    assert runtime_network("uir.models.nafnet.NAFNet") is nafnet.NAFNet
    assert runtime_network("uir.models.srresnet.SRResNet") is None  # no plain twin: diffusers loads it


def test_a_runtime_load_reads_each_file_of_the_folder_once(monkeypatch):
    """``model_index.json`` and every ``config.json`` are read once, into the saved-folder record
    that the loading decision and the runtime share."""
    import builtins
    from collections import Counter

    from uir.pipelines.loading import default_model_dir, load_pipeline

    reads, folder = Counter(), str(default_model_dir())
    real_open, real_read_text = builtins.open, Path.read_text

    def counted(path):
        if str(path).startswith(folder) and str(path).endswith(".json"):
            reads[str(path)[len(folder) + 1:]] += 1

    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: (counted(file), real_open(file, *a, **k))[1])
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (counted(self), real_read_text(self, *a, **k))[1])
    load_pipeline(runtime=True)
    assert reads["model_index.json"] == 1 and reads["router/config.json"] == 1 and reads["experts/config.json"] == 1
    assert set(reads.values()) == {1}, reads
