"""The Slicer module file, its panel (.ui), CMake lists and resources, checked without Slicer.

The module file needs a full Slicer to run; here it is compiled, and everything it names in
the panel and the build is checked to exist.
"""

from __future__ import annotations

import ast
import py_compile
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import slicer

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "StrokePerfusionSeg"
MODULE_FILE = MODULE_DIR / "StrokePerfusionSeg.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "StrokePerfusionSeg.ui"


def ui_widgets() -> dict[str, ElementTree.Element]:
    tree = ElementTree.parse(UI_FILE)
    return {widget.get("name"): widget for widget in tree.iter("widget")}


def parameter_annotations() -> dict[str, str]:
    """Field -> annotation source of the parameter node, module-level aliases expanded."""
    module = ast.parse(MODULE_FILE.read_text())
    aliases = {
        node.targets[0].id: ast.unparse(node.value)
        for node in module.body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }
    for node in module.body:
        if isinstance(node, ast.ClassDef) and node.name == "StrokePerfusionSegParameterNode":
            return {
                item.target.id: aliases.get(ast.unparse(item.annotation), ast.unparse(item.annotation))
                for item in node.body if isinstance(item, ast.AnnAssign)
            }
    raise AssertionError("StrokePerfusionSegParameterNode not found")


def parameter_fields() -> set[str]:
    return set(parameter_annotations())


def bound_parameters() -> dict[str, str]:
    """Widget name -> parameter it is bound to through ``SlicerParameterName``."""
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[name] = prop.find("string").text
    return bound


def test_module_file_compiles(tmp_path):
    py_compile.compile(str(MODULE_FILE), cfile=str(tmp_path / "module.pyc"), doraise=True)


def test_every_widget_the_module_names_exists_in_the_ui():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    widgets = ui_widgets()
    assert used, "the module names no widget"
    assert used <= set(widgets), f"missing in the .ui: {sorted(used - set(widgets))}"


def test_ui_binds_every_parameter_to_an_existing_field():
    bound = bound_parameters()
    fields = parameter_fields()
    assert set(bound.values()) <= fields, sorted(set(bound.values()) - fields)
    # Every parameter has its widget, except the method: its combo lists the models found at
    # run time, which no Choice annotation holds, so the Widget syncs it by hand.
    assert fields - set(bound.values()) == {"method"}
    assert "methodComboBox" not in bound


def test_combo_boxes_are_bound_to_choices_only():
    """Slicer's QComboBox connector raises without a Choice annotation (or an Enum)."""
    widgets, annotations = ui_widgets(), parameter_annotations()
    for name, parameter in bound_parameters().items():
        if widgets[name].get("class") in ("QComboBox", "ctkComboBox"):
            assert "Choice(" in annotations[parameter], f"{parameter} is bound to {name} without Choice"


def test_node_parameters_name_concrete_classes_and_none():
    """The selector connector instantiates each annotated class; the serializer needs None in a Union."""
    for parameter, annotation in parameter_annotations().items():
        classes = re.findall(r"\bvtkMRML\w+", annotation)
        if not classes:
            continue
        for name in classes:
            if name == "vtkMRMLMultiVolumeNode":  # MultiVolumeExplorer's; guarded by hasattr in the module
                continue
            getattr(slicer, name)()  # an abstract class raises TypeError here, as in Slicer
        if "Union[" in annotation:
            assert annotation.startswith("Optional[") or "None" in annotation, f"{parameter}: {annotation}"


def test_library_imports_without_pytorch():
    """Thresholding, the phantom sample and the panel need no PyTorch: torch is imported lazily."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("PyTorch is not installed")

        sys.meta_path.insert(0, NoTorch())
        import StrokePerfusionSegLib as package

        # The network code itself, imported only on a model's path.
        with_torch = ("networks", "losses", "flops", "batchsizing", "__main__")
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.split(".")[1] not in with_torch:
                importlib.import_module(info.name)
    """)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_map_selectors_accept_scalar_and_colour_volumes_only():
    widgets = ui_widgets()
    for name in ("cbfSelector", "cbvSelector", "ttpSelector", "tmaxSelector", "mipSelector"):
        types = [s.text for s in widgets[name].iter("string") if s.text and s.text.startswith("vtkMRML")]
        assert types == ["vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"], name
    spin = widgets["nihssSpinBox"]
    numbers = {p.get("name"): int(p.find("number").text) for p in spin.findall("property") if p.find("number") is not None}
    assert numbers["minimum"] == -1 and numbers["maximum"] == 42  # -1 shows "not set"


def test_apply_starts_disabled_with_a_reason():
    apply_button = ui_widgets()["applyButton"]
    properties = {p.get("name"): p for p in apply_button.findall("property")}
    assert properties["enabled"].find("bool").text == "false"
    assert properties["toolTip"].find("string").text


def test_module_never_installs_at_import():
    """pip/torch installs happen only inside functions run on Apply, never at module level."""
    module = ast.parse(MODULE_FILE.read_text())
    top_level_calls = [
        ast.unparse(node) for node in module.body if isinstance(node, (ast.Expr, ast.Assign))
    ]
    assert not [call for call in top_level_calls if "pip_" in call or "installTorch" in call]
    imports = [ast.unparse(node) for node in module.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not [line for line in imports if re.search(r"\b(torch|skimage|safetensors)\b", line)]


def test_cmake_lists_every_resource_and_script():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest" in text
    for resource in re.findall(r"^\s+(Resources/\S+)$", text, flags=re.MULTILINE):
        pattern = resource.replace("${MODULE_NAME}", "StrokePerfusionSeg")
        assert any(path.is_file() for path in MODULE_DIR.glob(pattern)), f"CMakeLists.txt lists missing {resource}"
    top = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r'EXTENSION_CATEGORY "Segmentation"', top)
    assert re.search(r'EXTENSION_DEPENDS "PyTorch"', top)
    assert "add_subdirectory(StrokePerfusionSeg)" in top


def test_extensions_index_entry():
    """The entry to submit to Slicer's Extensions Index (catalog-entry schema v1.0.1)."""
    import json

    entry = json.loads((ROOT / "Resources" / "ExtensionsIndex" / "StrokePerfusionSeg.json").read_text())
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "build_subdirectory", "enabled", "tier"}
    assert {"$schema", "category", "scm_url"} <= set(entry) <= allowed
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert "PyTorch" in entry["build_dependencies"]
    top = (ROOT / "CMakeLists.txt").read_text()
    assert f'EXTENSION_CATEGORY "{entry["category"]}"' in top
    assert f'EXTENSION_HOMEPAGE "{entry["scm_url"]}"' in top


def test_sample_study_loads_as_the_module_loads_it():
    """The shipped sample: the five panel inputs on one grid, NIHSS and units recorded."""
    from StrokePerfusionSegLib.casefolder import load_case

    case = load_case(MODULE_DIR / "Resources" / "SampleData" / "phantom-lvo", with_label=False)
    assert set(case.maps) == {"cbf", "cbv", "ttp", "tmax", "mip"}
    assert case.nihss == 22 and case.ctp is None
    assert all(array.shape == case.shape for array in case.maps.values())


@pytest.mark.parametrize("path", [ROOT / "StrokePerfusionSeg.png", MODULE_DIR / "Resources" / "Icons" / "StrokePerfusionSeg.png"])
def test_icons_are_128_pixels(path):
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (128, 128)


def test_requirements_name_installable_packages():
    lines = [
        line.strip()
        for line in (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    names = {re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower() for line in lines}
    assert "torch" not in names  # PyTorch comes from the PyTorch extension
    assert {"scikit-image", "safetensors"} <= names


def module_function(name: str):
    """A module-level function of the module file, run here without Slicer (it must need none)."""
    module = ast.parse(MODULE_FILE.read_text())
    (node,) = [node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == name]
    namespace: dict = {}
    exec(compile(ast.Module([node], type_ignores=[]), str(MODULE_FILE), "exec"), namespace)
    return namespace[name]


def test_requirement_check_evaluates_environment_markers():
    """A requirement whose marker leaves this platform out is met (pip skips it): otherwise Apply
    would ask to install it on every run there (isal on macOS Intel)."""
    installed = module_function("_installed")
    assert installed("numpy>=1.0") and not installed("numpy>=999")
    assert not installed("no-such-distribution-here>=1")
    assert installed("no-such-distribution-here>=1; sys_platform == 'no-such-platform'")
    assert not installed("no-such-distribution-here>=1; python_version >= '3'")
    assert not installed("numpy>=999; python_version >= '3'")


def test_requirements_are_the_librarys_and_met_here():
    """Each line of requirements.txt is a dependency of pyproject.toml as written there, and met
    in this environment (where the library is installed)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement

    lines = [line.strip() for line in (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    library = {str(Requirement(line)) for line in
               tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert {str(Requirement(line)) for line in lines} <= library
    assert "isal" in {Requirement(line).name for line in lines}
    installed = module_function("_installed")
    assert all(installed(line) for line in lines)


def test_perfusion_method_combo_offers_every_method_and_defaults_to_the_product_default():
    from StrokePerfusionSegLib.perfusionmethods import DEFAULT_METHOD, METHODS

    combo = ui_widgets()["perfusionMethodComboBox"]
    assert tuple(item.find("property/string").text for item in combo.findall("item")) == METHODS
    assert bound_parameters()["perfusionMethodComboBox"] == "perfusionMethod"
    assert parameter_annotations()["perfusionMethod"] == "Annotated[str, Choice(list(METHODS))]"
    assert "perfusionMethod: Annotated[str, Choice(list(METHODS))] = DEFAULT_METHOD" in MODULE_FILE.read_text()
    assert DEFAULT_METHOD in METHODS
