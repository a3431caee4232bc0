"""Contract harness: the Slicer module against Slicer's own Python code, without a Slicer build.

    python tools/slicer_contract.py --slicer-source /path/to/Slicer [--skip-self-test]

Loads Slicer's real pure-Python modules from a source checkout of Slicer (``slicer.util``,
``slicer.i18n``, ``slicer.parameterNodeWrapper`` with its GUI connectors,
``slicer.ScriptedLoadableModule``, ``slicer.packaging`` where the version has it,
``slicer.testing`` and the ``SampleData`` module) onto the MRML of the ``slicer-core`` wheel, with the Qt/CTK stand-ins
of ``tools/slicer_standins.py``. Then it does what Slicer does with the module: imports it,
instantiates the module class, emits ``startupCompleted``, builds the panel from the ``.ui``
and connects the parameter node through ``connectGui``, loads the sample as the SampleData
button does, segments the phantom through the panel and the Logic, and runs the module's
self-test. Each step prints PASS or FAIL (with the traceback); the exit status is the number
of failed steps.

Run it once per supported Slicer version (check out the tag, e.g. ``git worktree add ../s58
v5.8.1``). It runs by hand: CI has no Slicer source. What it cannot show (rendering, real
widgets, the PyTorch extension, installing packages) is listed in docs/slicer.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "StrokePerfusionSeg"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import slicer_standins  # noqa: E402


class Steps:
    """Runs named steps, prints PASS/FAIL and keeps going."""

    def __init__(self):
        self.failed = []

    def run(self, name, function):
        start = time.perf_counter()
        try:
            detail = function()
        except Exception:
            self.failed.append(name)
            print(f"FAIL  {name}\n" + "".join("      " + line for line in traceback.format_exc().splitlines(True)))
            return None
        print(f"PASS  {name} ({time.perf_counter() - start:.1f} s){': ' + detail if detail else ''}")
        return detail


def slicer_version(source: Path) -> tuple[int, int]:
    text = (source / "CMakeLists.txt").read_text()
    major = re.search(r'set\(Slicer_VERSION_MAJOR "(\d+)"\)', text).group(1)
    minor = re.search(r'set\(Slicer_VERSION_MINOR "(\d+)"\)', text).group(1)
    return int(major), int(minor)


def _load(fullname: str, path: Path):
    """Import ``path`` as ``fullname`` (a package when ``path`` is a folder) and attach it to its parent."""
    is_package = path.is_dir()
    spec = importlib.util.spec_from_file_location(
        fullname, path / "__init__.py" if is_package else path,
        submodule_search_locations=[str(path)] if is_package else None,
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[fullname] = module
    spec.loader.exec_module(module)
    parent, _, child = fullname.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def load_slicer(source: Path) -> list[str]:
    """slicer-core's MRML plus Slicer's own Python modules from ``source``; returns their names."""
    major, minor = slicer_version(source)
    slicer_standins.install(major, minor)
    import slicer

    slicer.mrmlScene = slicer.vtkMRMLScene()
    python_dir = source / "Base" / "Python" / "slicer"
    loaded = []
    for name in ("i18n", "util", "parameterNodeWrapper", "ScriptedLoadableModule", "packaging", "testing"):
        path = python_dir / name if (python_dir / name).is_dir() else python_dir / f"{name}.py"
        if path.exists():
            _load(f"slicer.{name}", path)
            loaded.append(f"slicer.{name}")
    if "slicer.packaging" not in loaded and hasattr(slicer, "packaging"):
        delattr(slicer, "packaging")  # older Slicer: the module must not find it
    sys.path.insert(0, str(source / "Modules" / "Scripted" / "SampleData"))
    import SampleData  # noqa: F401

    loaded.append("SampleData")
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    slicer.modules.terminologies = type("Module", (), {"logic": staticmethod(lambda: terminologies)})()
    return loaded


#: Files whose Slicer API calls are checked against the version's headers.
CALLERS = (
    MODULE_DIR / "StrokePerfusionSeg.py",
    *sorted((MODULE_DIR / "StrokePerfusionSegLib" / "mrml").glob("*.py")),
    MODULE_DIR / "StrokePerfusionSegLib" / "terminology.py",
    MODULE_DIR / "Resources" / "Scripts" / "batch_segment.py",
)


def slicer_methods_called() -> set[str]:
    """CamelCase attributes the module's files use that a Slicer C++ class of slicer-core defines.

    VTK's own methods are left out (defined on VTK classes, not Slicer's): only Slicer API is
    expected in Slicer's headers.
    """
    import ast

    import slicer

    used = set()
    for path in CALLERS:
        if path.is_file():
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and re.fullmatch(r"[A-Z][A-Za-z0-9]+", node.attr):
                    used.add(node.attr)
    slicer_classes = [
        cls for name in dir(slicer) if name.startswith("vtk")
        for cls in [getattr(slicer, name)] if isinstance(cls, type) and cls.__module__.startswith("slicer_core")
    ]
    return {name for name in used if any(name in vars(cls) for cls in slicer_classes)}


#: What ``vtkTypeMacro`` gives every class.
VTK_TYPE_MACRO = {"IsA", "IsTypeOf", "SafeDownCast", "NewInstance", "GetClassName"}


def _declarations(name: str) -> list[str]:
    """Spellings that declare ``name`` in a header: itself, or a VTK Set/Get/Boolean macro of its stem."""
    spellings = [rf"\b{name}\b"]
    for prefix in ("Get", "Set"):
        if name.startswith(prefix):
            spellings.append(rf"vtk{prefix}\w*Macro\(\s*{name[len(prefix):]}\b")
    for suffix in ("On", "Off"):
        if name.endswith(suffix):
            spellings.append(rf"vtkBooleanMacro\(\s*{name[:-len(suffix)]}\b")
    return spellings


def undeclared(source: Path, names: set[str]) -> set[str]:
    """``names`` that no C++ header of the Slicer checkout declares."""
    remaining = set(names) - VTK_TYPE_MACRO
    patterns = {name: re.compile("|".join(_declarations(name))) for name in remaining}
    for header in source.glob("**/*.h"):
        text = header.read_text(errors="replace")
        remaining -= {name for name in remaining if patterns[name].search(text)}
        if not remaining:
            break
    return remaining


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slicer-source", type=Path, required=True,
                        help="a checkout of https://github.com/Slicer/Slicer (any supported tag)")
    parser.add_argument("--skip-self-test", action="store_true", help="leave out the module's self-test")
    args = parser.parse_args(argv)
    source = args.slicer_source.resolve()
    if not (source / "Base" / "Python" / "slicer" / "parameterNodeWrapper").is_dir():
        parser.error(f"{source} is not a Slicer source checkout (no Base/Python/slicer/parameterNodeWrapper)")

    major, minor = slicer_version(source)
    print(f"Slicer source {source} (version {major}.{minor}); Python {sys.version.split()[0]}")
    steps = Steps()
    loaded = steps.run("load Slicer's Python modules", lambda: ", ".join(load_slicer(source)))
    if loaded is None:
        return 1
    import slicer
    from SampleData import SampleDataLogic

    state = {}

    def import_module():
        sys.path.insert(0, str(MODULE_DIR))
        state["module"] = importlib.import_module("StrokePerfusionSeg")

    def module_class():
        module = state["module"]
        parent = slicer_standins.ScriptedModuleParent(MODULE_DIR / "StrokePerfusionSeg.py")
        instance = module.StrokePerfusionSeg(parent)
        slicer.modules.strokeperfusionseg = parent
        slicer.modules.StrokePerfusionSegInstance = instance
        assert parent.title and parent.categories, "title and category are shown in the module list"
        for dependency in parent.dependencies:
            assert any((source / "Modules" / kind / dependency).is_dir() for kind in ("Loadable", "Scripted")), (
                f"dependency {dependency} is no Slicer module")
        assert "href=" in parent.helpText, "the help names the documentation"
        assert "StrokePerfusionSeg" in slicer.selfTests
        return f"'{parent.title}' in {parent.categories}, depends on {parent.dependencies}"

    def startup():
        slicer.app.startupCompleted.emit()
        import SampleData

        source_ = SampleData.SampleDataLogic().sourceForSampleName(state["module"].SAMPLE_NAME)
        assert source_ is not None, "the sample is not registered"
        assert source_.customDownloader is not None
        state["sample"] = source_
        return f"sample '{source_.sampleName}' registered"

    def load_sample():
        source_ = state["sample"]
        nodes = source_.customDownloader(source_)  # what the SampleData button calls
        assert nodes, "the sample loaded no node"
        return ", ".join(node.GetName() for node in nodes)

    def panel():
        module = state["module"]
        parent = slicer_standins.qSlicerScriptedLoadableModuleWidget()
        parent.setLayout(slicer_standins.QVBoxLayout())
        parent.setMRMLScene(slicer.mrmlScene)
        widget = module.StrokePerfusionSegWidget(parent)
        widget.setup()
        widget.enter()
        slicer.app.processEvents()
        assert not slicer_standins.QUiLoader.warnings, slicer_standins.QUiLoader.warnings
        state["widget"] = widget
        parameters = widget._parameterNode
        for name in module.MAP_PARAMETERS.values():
            selector = next(w for w in vars(widget.ui).values() if w.property("SlicerParameterName") == name)
            assert selector.mrmlScene() is slicer.mrmlScene, f"{selector.objectName} has no scene"
            assert selector.currentNode() is getattr(parameters, name), f"{name}: panel and parameter differ"
            assert selector.currentNode() is not None, f"{name} was not filled from the sample"
            assert selector.currentNode() in selector.nodes()
        return f"{len(module.MAP_PARAMETERS)} map selectors filled and listed; methods: " + ", ".join(
            widget.ui.methodComboBox.itemText(i) for i in range(widget.ui.methodComboBox.count))

    def required_inputs():
        widget = state["widget"]
        combo = widget.ui.methodComboBox
        parameters = widget._parameterNode
        reasons = {}
        for index in range(combo.count):
            combo.currentIndex = index
            assert parameters.method == combo.currentText, "the method combo does not reach the parameter node"
            parameters.nihss = -1
            reasons[combo.currentText] = (widget.ui.applyButton.enabled, widget.ui.applyButton.toolTip)
        for method, (enabled, tip) in reasons.items():
            if method != "threshold":
                assert not enabled and "NIHSS" in tip, f"{method}: Apply must wait for the NIHSS ({tip})"
        assert reasons["threshold"][0], reasons["threshold"][1]
        parameters.method = "threshold"
        assert combo.currentText == "threshold", "the parameter node does not reach the method combo"
        return "; ".join(f"{m}: {'enabled' if e else tip}" for m, (e, tip) in reasons.items())

    def apply_threshold():
        widget = state["widget"]
        widget._parameterNode.method = "threshold"
        widget.ui.applyButton.click()
        parameters = widget._parameterNode
        segmentation = parameters.outputSegmentation
        assert segmentation is not None, widget.ui.statusLabel.text
        ids = set(segmentation.GetSegmentation().GetSegmentIDs())
        assert {"IschemicCore", "Penumbra"} <= ids, ids
        assert widget.ui.resultsTableView.mrmlTableNode() is parameters.outputTable
        assert widget.ui.outputSegmentationSelector.currentNode() is segmentation
        return widget.ui.statusLabel.text.split("<br>")[0]

    def logic_model():
        try:
            import torch  # noqa: F401
        except ImportError:
            return "skipped: no PyTorch here"
        module = state["module"]
        logic = module.StrokePerfusionSegLogic()
        parameters = logic.getParameterNode()
        parameters.method = logic.availableModels()[0]
        parameters.nihss = 12
        parameters.outputSegmentation = None
        parameters.outputTable = None
        parameters.device = "cpu"
        result = logic.segment(parameters)
        return f"{parameters.method}: core {result.volumes.core_ml:.1f} ml, penumbra {result.volumes.penumbra_ml:.1f} ml"

    def dependencies():
        logic = state["module"].StrokePerfusionSegLogic()
        assert logic.ensureDependencies("threshold") is True
        return "slicer.packaging.pip_ensure" if hasattr(slicer, "packaging") else "importlib fallback (no slicer.packaging)"

    def ctp_sample_and_maps():
        try:
            import torch  # noqa: F401
        except ImportError:
            return "skipped: the CTP sample is simulated with PyTorch"
        module, widget = state["module"], state["widget"]
        source_ = SampleDataLogic().sourceForSampleName(module.CTP_SAMPLE_NAME)
        nodes = source_.customDownloader(source_)
        ctp = next(node for node in nodes if node.IsA("vtkMRMLSequenceNode"))
        assert ctp in widget.ui.ctpSelector.nodes(), "the 4D CTP selector does not list the sequence"
        widget._parameterNode.ctpNode = ctp
        assert widget.ui.ctpSelector.currentNode() is ctp and widget.ui.computeMapsButton.enabled
        widget.ui.computeMapsButton.click()
        assert widget.ui.statusLabel.text.startswith("Perfusion maps computed"), widget.ui.statusLabel.text
        assert "CTP" in widget._parameterNode.cbfVolume.GetName()
        return widget.ui.statusLabel.text

    def scene_close():
        widget = state["widget"]
        slicer.mrmlScene.Clear()  # emits StartClose/EndClose as File > Close Scene does
        slicer.app.processEvents()
        parameters = widget._parameterNode
        assert parameters is not None, "no parameter node after closing the scene"
        assert parameters.parameterNode.GetScene() is slicer.mrmlScene
        assert not widget.ui.applyButton.enabled and widget.ui.cbfSelector.currentNode() is None
        loaded = state["sample"].customDownloader(state["sample"])
        slicer.app.processEvents()  # auto-fill runs on the next event loop turn
        assert widget.ui.cbfSelector.currentNode() in loaded, "the new study did not fill the panel"
        return "panel reconnected to the new parameter node and re-filled"

    def catalog_entry():
        entry = json.loads((ROOT / "Resources" / "ExtensionsIndex" / "StrokePerfusionSeg.json").read_text())
        schema_file = source / "Schemas" / Path(entry["$schema"].split("#")[0]).name
        schema = json.loads(schema_file.read_text())
        assert set(schema["required"]) <= set(entry), f"missing {set(schema['required']) - set(entry)}"
        assert set(entry) <= set(schema["properties"]), f"unknown {set(entry) - set(schema['properties'])}"
        kinds = {"string": str, "array": list, "boolean": bool, "integer": int}
        for key, value in entry.items():
            assert isinstance(value, kinds[schema["properties"][key]["type"]]), key
        assert "PyTorch" in entry["build_dependencies"]
        return f"valid against {schema_file.name}"

    def api_declared():
        if not (source / "Libs" / "MRML").is_dir():
            return "skipped: the checkout has no Libs/ (C++ headers)"
        names = slicer_methods_called()
        missing = undeclared(source, names)
        assert not missing, f"not in Slicer {major}.{minor}: {sorted(missing)}"
        return f"{len(names)} MRML/segmentation methods declared in this version's headers"

    def self_test():
        slicer.selfTests["StrokePerfusionSeg"]()  # what "Reload and Test" calls
        slicer.testing.runUnitTest([str(MODULE_DIR)], "StrokePerfusionSeg")  # what the ctest runs

    for name, function in (
        ("import the module file", import_module),
        ("module class", module_class),
        ("startupCompleted: sample registered", startup),
        ("sample loads as the SampleData button does", load_sample),
        ("panel: .ui loaded, parameter node connected", panel),
        ("panel: required inputs follow the method", required_inputs),
        ("panel: Apply with thresholding", apply_threshold),
        ("Logic with the default model", logic_model),
        ("panel: CTP sample, Compute perfusion maps", ctp_sample_and_maps),
        ("panel: scene closed and a new study loaded", scene_close),
        ("dependencies present", dependencies),
        ("Extensions Index entry", catalog_entry),
        ("Slicer C++ API the module calls exists", api_declared),
    ):
        steps.run(name, function)
    if not args.skip_self_test:
        steps.run("module self-test", self_test)
    print(f"{len(steps.failed)} step(s) failed" + (": " + "; ".join(steps.failed) if steps.failed else ""))
    return len(steps.failed)


if __name__ == "__main__":
    sys.exit(main())
