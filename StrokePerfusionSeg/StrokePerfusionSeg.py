"""3D Slicer module "Segment core/penumbra": ischemic core and penumbra from CT perfusion.

The panel and a thin logic. All MRML work is in ``StrokePerfusionSegLib.mrml`` (tested on the
slicer-core wheel), which runs the same pipeline (``StrokePerfusionSegLib.pipeline``) as the
command line and the batch; all numerical work is in the rest of ``StrokePerfusionSegLib``. Heavy
packages (torch, scikit-image, ...) are imported only after Apply has made sure they are
installed. Runs in Slicer 5.8 (Python 3.9) and newer: no ``X | Y`` annotations evaluated here.
"""

import logging
from pathlib import Path
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode,
    vtkMRMLTableNode,
    vtkMRMLVectorVolumeNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from StrokePerfusionSegLib.errors import CancelledError, InputError
from StrokePerfusionSegLib.methodcache import MethodCache
from StrokePerfusionSegLib.mrml import ctp as mrmlCtp
from StrokePerfusionSegLib.mrml import nodes as mrmlNodes
from StrokePerfusionSegLib.mrml import segmentation as mrmlSegmentation
from StrokePerfusionSegLib.mrml import study as mrmlStudy
from StrokePerfusionSegLib.perfusionmethods import DEFAULT_METHOD, METHODS
from StrokePerfusionSegLib.terminology import TERMINOLOGY_FILE
from StrokePerfusionSegLib.volumes import DECISION_SUPPORT_CAVEAT

MODULE_TITLE = "Segment core/penumbra"
#: Oldest Slicer the module is verified with (docs/slicer.md says how).
MINIMUM_SLICER_VERSION = (5, 8)
DOCUMENTATION_URL = "https://github.com/StrokePerfusionSeg/StrokePerfusionSeg/blob/main/docs/slicer.md"
THRESHOLD_METHOD = "threshold"
SAMPLE_CATEGORY = "StrokePerfusionSeg"
SAMPLE_NAME = "StrokePerfusionSegPhantom"
CTP_SAMPLE_NAME = "StrokePerfusionSegPhantomCTP"
#: Map name -> parameter of the parameter node.
MAP_PARAMETERS = {"cbf": "cbfVolume", "cbv": "cbvVolume", "ttp": "ttpVolume", "tmax": "tmaxVolume", "mip": "mipVolume"}
#: The PyTorch extension installs these (the project's own floor, as in pyproject.toml).
TORCH_REQUIREMENT = ">=2.1"
TORCHVISION_REQUIREMENT = ">=0.16"

# Node parameters: concrete classes (the selector connector instantiates them) and None among
# the Union's members (the wrapper's serializer needs it for an empty selection).
#: Map volumes: scalar maps in their unit, or colour-coded RGB captures (vector volumes).
MapVolume = Optional[Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode]]
#: 4D CTP: a sequence of scalar volumes, or a multi-volume where MultiVolumeExplorer provides it.
CtpNode = Optional[Union[(vtkMRMLSequenceNode,) + (
    (slicer.vtkMRMLMultiVolumeNode,) if hasattr(slicer, "vtkMRMLMultiVolumeNode") else ())]]


#
# Module
#


class StrokePerfusionSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Segment core/penumbra")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations", "SubjectHierarchy", "Terminologies"]
        self.parent.contributors = ["StrokePerfusionSeg developers"]
        self.parent.helpText = _(
            "Segments the ischemic core and the penumbra of acute ischemic stroke from CT perfusion "
            "maps (CBF, CBV, TTP, Tmax, MIP; scalar or colour-coded) and the NIHSS score, with a "
            "multi-input slow-fusion network (Tomasetti et al.) or RAPID-like thresholds, and "
            "computes the maps from a raw 4D CTP. Results: a segmentation with the segments "
            "'Ischemic core' and 'Penumbra', their volumes in ml and the DEFUSE-3 mismatch figures."
            "<br><b>Decision support only</b>: the segments and figures must be reviewed and "
            "corrected by a physician; they are not a treatment decision."
            "<br>See the {link_start}module documentation{link_end} (Slicer {version} or newer)."
        ).format(link_start=f'<a href="{DOCUMENTATION_URL}">', link_end="</a>",
                 version="{}.{}".format(*MINIMUM_SLICER_VERSION))
        self.parent.acknowledgementText = _(
            "Implements the method of L. Tomasetti, M. Khanmohammadi, K. Engan, L. J. Hollesli and "
            "K. D. Kurz, 'Multi-input segmentation of damaged brain in acute ischemic stroke "
            "patients using slow fusion with skip connection'. Perfusion analysis follows "
            "published bcSVD/oSVD deconvolution methods."
        )
        slicer.app.connect("startupCompleted()", _onStartupCompleted)


def unsupportedSlicerMessage() -> Optional[str]:
    """Why this Slicer is too old for the module, or None when it is supported."""
    running = (slicer.app.majorVersion, slicer.app.minorVersion)
    if running >= MINIMUM_SLICER_VERSION:
        return None
    return _("{title} needs Slicer {minimum} or newer; this is Slicer {running}: install a newer Slicer.").format(
        title=MODULE_TITLE, minimum="{}.{}".format(*MINIMUM_SLICER_VERSION), running="{}.{}".format(*running))


def _onStartupCompleted():
    """Register the sample studies and the lesion terminology once Slicer has started."""
    problem = unsupportedSlicerMessage()
    if problem:
        logging.warning(problem)
    if hasattr(slicer.modules, "terminologies") and TERMINOLOGY_FILE.is_file():
        mrmlSegmentation.load_terminology(slicer.modules.terminologies.logic())
    registerSampleData()


def registerSampleData():
    """Two samples, neither downloaded: the phantom maps shipped with the module, and a 4D CTP
    simulated on request by the library's digital phantom (that one needs PyTorch).

    A custom downloader is called by the SampleData button with the source, and never by
    ``SampleData.downloadSample``; empty ``uris``/``fileNames``/``nodeNames`` lists are the
    form ``SampleDataSource`` accepts for a source without files.
    """
    import SampleData

    logic = SampleData.SampleDataLogic
    if hasattr(logic, "registerCustomSampleDataCategory"):  # Slicer 5.12+
        logic.registerCustomSampleDataCategory(SAMPLE_CATEGORY, title=_("Segment core/penumbra"))
    thumbnail = str(Path(__file__).parent / "Resources" / "Icons" / "StrokePerfusionSeg.png")
    for sampleName, loader in ((SAMPLE_NAME, loadPhantomMaps), (CTP_SAMPLE_NAME, loadPhantomCtp)):
        logic.registerCustomSampleDataSource(
            category=SAMPLE_CATEGORY, sampleName=sampleName, thumbnailFileName=thumbnail,
            uris=[], fileNames=[], nodeNames=[], customDownloader=loader,
        )


def loadPhantomMaps(source=None) -> list:
    """Load the phantom LVO study shipped in ``Resources/SampleData`` (CBF, CBV, TTP, Tmax, MIP; NIHSS 22).

    Made by ``tools/make_sample_study.py`` from the digital phantom; loads offline and without
    PyTorch, so the self-test can run anywhere.
    """
    from StrokePerfusionSegLib.casefolder import load_case

    case = load_case(Path(__file__).parent / "Resources" / "SampleData" / "phantom-lvo", with_label=False)
    return list(mrmlNodes.add_case_volumes(slicer.mrmlScene, case).values())


def loadPhantomCtp(source=None) -> list:
    """Simulate the phantom LVO study with its 4D CTP (seed 5, 128x128, 8 slices) and load it.

    The phantom simulates with PyTorch: offered for install first, as for a model.
    """
    if not StrokePerfusionSegLogic().ensureDependencies(requireTorch=True):
        return []
    from StrokePerfusionSegLib.phantom import PhantomConfig, generate_case

    with slicer.util.WaitCursor():
        case = generate_case("phantom-lvo", "LVO", seed=5, config=PhantomConfig(size=128, slices=8))
        return list(mrmlNodes.add_case_volumes(slicer.mrmlScene, case).values())


#
# Parameter node
#


@parameterNodeWrapper
class StrokePerfusionSegParameterNode:
    """Everything the panel edits; saved with the scene.

    ``method`` has no widget binding: its combo box lists the models found at run time, which a
    ``Choice`` annotation cannot hold; the Widget keeps the two in step.
    """

    cbfVolume: MapVolume
    cbvVolume: MapVolume
    ttpVolume: MapVolume
    tmaxVolume: MapVolume
    mipVolume: MapVolume
    ctpNode: CtpNode
    frameInterval: Annotated[float, WithinRange(0.0, 60.0)] = 0.0  # s; 0 = from the series
    perfusionMethod: Annotated[str, Choice(list(METHODS))] = DEFAULT_METHOD
    nihss: Annotated[int, WithinRange(-1, 42)] = -1  # -1 = not set
    method: str = ""  # a registry model id or "threshold"; empty: the default model
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode


#
# Widget
#


class StrokePerfusionSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: inputs, method, Apply/Cancel with progress, results."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cancelRequested = False
        self._busy = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/StrokePerfusionSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = StrokePerfusionSegLogic()

        self._fillMethods()
        self.ui.progressBar.hide()
        self.ui.caveatLabel.text = DECISION_SUPPORT_CAVEAT
        self.ui.statusLabel.text = unsupportedSlicerMessage() or ""

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)

        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.computeMapsButton.connect("clicked(bool)", self.onComputeMapsButton)
        self.ui.show3DButton.connect("toggled(bool)", self.onShow3DToggled)
        self.ui.editInSegmentEditorButton.connect("clicked(bool)", self.onEditInSegmentEditor)

        self.initializeParameterNode()

    def _fillMethods(self) -> None:
        """Registry models (the default one first), then thresholding."""
        combo = self.ui.methodComboBox
        combo.clear()
        for modelId in self.logic.availableModels():
            combo.addItem(modelId)
        combo.addItem(THRESHOLD_METHOD)

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRequested = True  # a running computation stops; the glue checks its nodes
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, node) -> None:
        if self._parameterNode and node.IsA("vtkMRMLVolumeNode") and not self._busy:
            qt.QTimer.singleShot(0, self._autoFillInputs)  # the node's name is set after adding

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if self.ui.methodComboBox.findText(self._parameterNode.method) < 0:  # unset, or a model no longer installed
            self._parameterNode.method = self.ui.methodComboBox.itemText(0)
        self._autoFillInputs()

    def _autoFillInputs(self) -> None:
        """Fill empty map selectors where exactly one loaded volume names that map."""
        if not self._parameterNode:
            return
        for name, node in mrmlNodes.guess_map_nodes(slicer.mrmlScene).items():
            parameter = MAP_PARAMETERS[name]
            if getattr(self._parameterNode, parameter) is None:
                setattr(self._parameterNode, parameter, node)

    def setParameterNode(self, inputParameterNode: Optional[StrokePerfusionSegParameterNode]) -> None:
        """Connect the panel to a parameter node once; it stays connected while the module is hidden.

        Slicer 5.8's ``connectGui`` returns no tag for ``disconnectGui`` and adds an observer on
        every call, so connecting on each ``enter()`` would pile connections up.
        """
        if (inputParameterNode and self._parameterNode
                and inputParameterNode.parameterNode is self._parameterNode.parameterNode):
            return
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def onMethodChanged(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.method = self.ui.methodComboBox.itemText(index)

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        index = self.ui.methodComboBox.findText(self._parameterNode.method)
        if index >= 0 and index != self.ui.methodComboBox.currentIndex:
            self.ui.methodComboBox.currentIndex = index
        self._checkCanApply()

    def _missingInputs(self) -> list:
        """Names of the inputs the chosen method needs and the panel lacks (maps, then NIHSS)."""
        parameters = self._parameterNode
        maps, needsNihss = self.logic.methodNeeds(parameters.method)
        missing = [name.upper() for name in maps if getattr(parameters, MAP_PARAMETERS[name]) is None]
        if needsNihss and parameters.nihss < 0:
            missing.append("NIHSS")
        return missing

    def _checkCanApply(self) -> None:
        if not self._parameterNode or self._busy:
            return
        try:
            missing = self._missingInputs()
            reason = _("Select {inputs}").format(inputs=", ".join(missing)) if missing else ""
        except InputError as error:  # e.g. a model of a saved scene that is not installed here
            reason = str(error)
        self.ui.applyButton.enabled = not reason
        self.ui.applyButton.toolTip = reason or _("Segment the ischemic core and penumbra")
        self.ui.computeMapsButton.enabled = self._parameterNode.ctpNode is not None
        segmentation = self._parameterNode.outputSegmentation
        self.ui.show3DButton.enabled = segmentation is not None
        self.ui.editInSegmentEditorButton.enabled = segmentation is not None
        if self._parameterNode.outputTable is not None:
            self.ui.resultsTableView.setMRMLTableNode(self._parameterNode.outputTable)

    # --- running -----------------------------------------------------------------------------

    def _progress(self, done: int, total: int) -> None:
        self.ui.progressBar.maximum = max(int(total), 1)
        self.ui.progressBar.value = int(done)
        slicer.app.processEvents()  # keeps the panel responsive and lets Cancel through

    def _cancelled(self) -> bool:
        return self._cancelRequested

    def _run(self, errorMessage: str, work) -> None:
        """Run ``work()`` with progress bar, Cancel and error display; the panel stays consistent."""
        self._busy = True
        self._cancelRequested = False
        self.ui.applyButton.enabled = False
        self.ui.computeMapsButton.enabled = False
        self.ui.cancelButton.enabled = True
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.statusLabel.text = ""
        try:
            with slicer.util.tryWithErrorDisplay(errorMessage, waitCursor=True):
                try:
                    work()
                except CancelledError:
                    self.ui.statusLabel.text = _("Cancelled: the scene was left as it was.")
        finally:
            self._busy = False
            self.ui.cancelButton.enabled = False
            self.ui.progressBar.hide()
            self._checkCanApply()

    def onCancelButton(self) -> None:
        self._cancelRequested = True
        self.ui.statusLabel.text = _("Cancelling...")

    def onApplyButton(self) -> None:
        def work():
            method = self._parameterNode.method
            if not self.logic.ensureDependencies(requireTorch=method != THRESHOLD_METHOD):
                self.ui.statusLabel.text = _("Dependencies not installed: nothing was done.")
                return
            result = self.logic.segment(self._parameterNode, progress=self._progress, cancel=self._cancelled)
            self._parameterNode.outputSegmentation = result.segmentation_node
            self._parameterNode.outputTable = result.table_node
            self.ui.resultsTableView.setMRMLTableNode(result.table_node)
            seconds = result.timings.get("total", 0.0)
            done = _("Done on {device} in {seconds} s.").format(device=result.device, seconds=f"{seconds:.1f}")
            self.ui.statusLabel.text = "<br>".join([done, *result.notes])
            slicer.util.setSliceViewerLayers(background=self._parameterNode.cbfVolume, fit=True)

        self._run(_("Segmentation failed."), work)

    def onComputeMapsButton(self) -> None:
        def work():
            if not self.logic.ensureDependencies(requireTorch=False):
                self.ui.statusLabel.text = _("Dependencies not installed: nothing was done.")
                return
            interval = self._parameterNode.frameInterval or None
            computed = self.logic.computeMaps(self._parameterNode.ctpNode, interval,
                                              perfusionMethod=self._parameterNode.perfusionMethod,
                                              progress=self._progress, cancel=self._cancelled)
            for name, parameter in MAP_PARAMETERS.items():
                if name in computed.nodes:
                    setattr(self._parameterNode, parameter, computed.nodes[name])
            done = _("Perfusion maps computed: {maps}").format(maps=", ".join(n.upper() for n in computed.nodes))
            self.ui.statusLabel.text = "<br>".join([done, *computed.notes])

        self._run(_("Computing perfusion maps failed."), work)

    def onShow3DToggled(self, show: bool) -> None:
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        if segmentation is None:
            return
        if show:
            segmentation.CreateClosedSurfaceRepresentation()
        segmentation.GetDisplayNode().SetVisibility3D(show)

    def onEditInSegmentEditor(self) -> None:
        segmentation = self._parameterNode.outputSegmentation
        source = mrmlSegmentation.source_volume_of(segmentation, slicer.mrmlScene) or self._parameterNode.cbfVolume
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(segmentation)
        editor.setSourceVolumeNode(source)


#
# Logic
#


class StrokePerfusionSegLogic(ScriptedLoadableModuleLogic):
    """Thin layer over ``StrokePerfusionSegLib.mrml`` (and so the pipeline) using Slicer's scene."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        # A model is loaded once, not on every Apply, until its bundle's files change.
        self._methods = MethodCache()

    def getParameterNode(self):
        return StrokePerfusionSegParameterNode(super().getParameterNode())

    @staticmethod
    def requirementsPath() -> Path:
        return Path(__file__).parent / "Resources" / "requirements.txt"

    def ensureDependencies(self, requireTorch: bool) -> bool:
        """True when every package is there; installs what is missing after asking.

        False when the user declines, or when Slicer runs in testing mode (which never
        installs) and something is missing. PyTorch comes from the PyTorch extension
        (``PyTorchUtils``, which picks the build for the GPU); the rest from
        ``Resources/requirements.txt``: through ``slicer.packaging.pip_ensure`` where Slicer
        has it (5.12+), else checked with ``importlib.metadata`` and installed with
        ``slicer.util.pip_install``.
        """
        if requireTorch and not self._ensureTorch():
            return False
        requirements = [line.strip() for line in self.requirementsPath().read_text().splitlines()
                        if line.strip() and not line.startswith("#")]
        if hasattr(slicer, "packaging"):
            try:
                slicer.packaging.pip_ensure(requirements, requester=MODULE_TITLE)  # returns None in every case
            except RuntimeError:  # how pip_ensure reports that the user declined
                return False
            return slicer.packaging.pip_check(requirements)
        missing = [requirement for requirement in requirements if not _installed(requirement)]
        if not missing:
            return True
        if slicer.app.testingEnabled():
            logging.info(f"Testing mode: not installing {missing}")
            return False
        if not slicer.util.confirmOkCancelDisplay(
            _("{title} needs these Python packages: {packages}. Install them now?").format(
                title=MODULE_TITLE, packages=", ".join(missing))):
            return False
        slicer.util.pip_install(missing)
        return all(_installed(requirement) for requirement in missing)

    def _ensureTorch(self) -> bool:
        if _installed("torch" + TORCH_REQUIREMENT):
            return True
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(
                _("The PyTorch extension is missing: install 'PyTorch' from the Extensions Manager and restart."))
            return False
        if PyTorchUtils.PyTorchUtilsLogic.torchInstalled():
            import torch

            slicer.util.errorDisplay(
                _("PyTorch {version} is older than this module needs ({required}): update it in the PyTorch Utils module.")
                .format(version=torch.__version__, required=TORCH_REQUIREMENT))
            return False
        if not slicer.util.confirmOkCancelDisplay(
            _("The segmentation model needs PyTorch (about 1-3 GB download). Install it now?")
        ):
            return False
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT,
            torchvisionVersionRequirement=TORCHVISION_REQUIREMENT)
        return torch is not None

    def availableModels(self) -> list:
        """Model ids of the registry, the default model first (empty when none is registered)."""
        from StrokePerfusionSegLib.registry import load_registry

        registry = load_registry()
        others = sorted(set(registry.models) - {registry.default_model_id})
        return ([registry.default_model_id] if registry.default_model_id else []) + others

    def methodNeeds(self, method: str) -> tuple:
        """``(required maps, reads NIHSS)`` of a method, from its manifest (no PyTorch needed).

        An :class:`InputError` (a model that is not installed, a broken bundle) goes to the
        caller, which shows it on the Apply button.
        """
        from StrokePerfusionSegLib.pipeline import method_needs

        return method_needs(method or None)  # empty: the default model

    def inputNodes(self, parameters) -> dict:
        """Map name -> selected volume node (None when not selected)."""
        return {name: getattr(parameters, parameter) for name, parameter in MAP_PARAMETERS.items()}

    def segment(self, parameters, progress=None, cancel=None):
        """Run the pipeline on the panel's parameters; returns ``mrml.study.PanelResult``."""
        nodes = {name: node for name, node in self.inputNodes(parameters).items() if node is not None}
        if not nodes:
            raise InputError("no input volumes: select the CBF, CBV, TTP, Tmax and MIP volumes")
        return mrmlStudy.segment_volumes(
            slicer.mrmlScene,
            nodes,
            method=self._methods.resolve(parameters.method or None),  # empty: the default model
            nihss=parameters.nihss if parameters.nihss >= 0 else None,
            segmentation_node=parameters.outputSegmentation,
            table_node=parameters.outputTable,
            device=parameters.device,
            progress=progress,
            cancel=cancel,
        )

    def computeMaps(self, ctpNode, frameInterval=None, perfusionMethod=DEFAULT_METHOD, progress=None, cancel=None):
        """Perfusion maps from a 4D CTP node into scalar volume nodes (see ``mrml.ctp.compute_map_volumes``).

        ``perfusionMethod``: one of ``perfusionmethods.METHODS`` (docs/perfusion.md compares them).
        """
        return mrmlCtp.compute_map_volumes(
            slicer.mrmlScene, ctpNode, dt_s=frameInterval, perfusion_method=perfusionMethod,
            progress=progress, cancel=cancel,
        )


def _installed(requirement: str) -> bool:
    """Whether ``requirement`` (e.g. ``scipy>=1.10``) is met here: an installed distribution
    satisfies it, or its environment marker leaves this platform out (pip would skip it)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    parsed = Requirement(requirement)
    if parsed.marker is not None and not parsed.marker.evaluate():
        return True
    try:
        return parsed.specifier.contains(version(parsed.name), prereleases=True)
    except PackageNotFoundError:
        return False


#
# Test
#


class StrokePerfusionSegTest(ScriptedLoadableModuleTest):
    """Loads the phantom sample study and runs the whole path, as a user would.

    Offline and without PyTorch or a GPU: the sample ships with the module and thresholding
    needs no PyTorch.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentPhantomStudy()

    def test_SegmentPhantomStudy(self):
        self.delayDisplay("Loading the phantom sample study")
        import SampleData

        registerSampleData()
        source = SampleData.SampleDataLogic().sourceForSampleName(SAMPLE_NAME)
        nodes = source.customDownloader(source)  # what the SampleData button does
        self.assertEqual(len(nodes), len(MAP_PARAMETERS))

        logic = StrokePerfusionSegLogic()
        self.assertTrue(logic.ensureDependencies(requireTorch=False))
        parameters = logic.getParameterNode()
        for name, node in mrmlNodes.guess_map_nodes(slicer.mrmlScene).items():
            setattr(parameters, MAP_PARAMETERS[name], node)
        parameters.method = THRESHOLD_METHOD

        self.delayDisplay("Segmenting with thresholds")
        result = logic.segment(parameters)
        segmentation = result.segmentation_node.GetSegmentation()
        self.assertEqual(set(segmentation.GetSegmentIDs()), {"IschemicCore", "Penumbra"})
        self.assertEqual(segmentation.GetSegment("IschemicCore").GetName(), "Ischemic core")
        values = mrmlSegmentation.table_values(result.table_node)
        self.assertAlmostEqual(values["Ischemic core"], result.volumes.core_ml, places=6)
        self.assertGreater(result.volumes.penumbra_ml, 0.0)  # the phantom is an LVO

        self.delayDisplay("Re-running replaces the segments")
        parameters.outputSegmentation = result.segmentation_node
        parameters.outputTable = result.table_node
        again = logic.segment(parameters)
        self.assertIs(again.segmentation_node, result.segmentation_node)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 1)
        self.delayDisplay("Test passed")
