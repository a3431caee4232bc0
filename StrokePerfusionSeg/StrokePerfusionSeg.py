"""3D Slicer module "Segment core/penumbra": ischemic core and penumbra from CT perfusion.

The panel and a thin logic. All MRML work is in ``StrokePerfusionSegLib.mrml`` (tested on the
slicer-core wheel), which runs the same pipeline (``StrokePerfusionSegLib.pipeline``) as the
command line and the batch; all numerical work is in the rest of ``StrokePerfusionSegLib``. Heavy
packages (torch, scikit-image, ...) are imported only after the first Apply has made sure they
are installed.
"""

import logging
from pathlib import Path

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
    vtkMRMLVolumeNode,
)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from typing import Annotated

from StrokePerfusionSegLib.errors import CancelledError, InputError
from StrokePerfusionSegLib.mrml import ctp as mrmlCtp
from StrokePerfusionSegLib.mrml import nodes as mrmlNodes
from StrokePerfusionSegLib.mrml import segmentation as mrmlSegmentation
from StrokePerfusionSegLib.mrml import study as mrmlStudy
from StrokePerfusionSegLib.terminology import TERMINOLOGY_FILE
from StrokePerfusionSegLib.volumes import DECISION_SUPPORT_CAVEAT

MODULE_TITLE = "Segment core/penumbra"
THRESHOLD_METHOD = "threshold"
SAMPLE_NAME = "StrokePerfusionSegPhantom"
MAP_PARAMETERS = (("cbf", "cbfVolume"), ("cbv", "cbvVolume"), ("ttp", "ttpVolume"), ("tmax", "tmaxVolume"),
                  ("mip", "mipVolume"))
#: Import names of the packages in Resources/requirements.txt (checked before installing).
REQUIRED_IMPORTS = ("scipy", "skimage", "safetensors", "tqdm")


#
# Module
#


class StrokePerfusionSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = MODULE_TITLE
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "SubjectHierarchy", "Terminologies"]
        self.parent.contributors = ["StrokePerfusionSeg developers"]
        self.parent.helpText = (
            "Segments the ischemic core and the penumbra of acute ischemic stroke from CT perfusion "
            "maps (CBF, CBV, TTP, Tmax, MIP; scalar or colour-coded) and the NIHSS score, with a "
            "multi-input slow-fusion network (Tomasetti et al.) or RAPID-like thresholds, and "
            "computes the maps from a raw 4D CTP. Results: a segmentation with the segments "
            "'Ischemic core' and 'Penumbra', their volumes in ml and the DEFUSE-3 mismatch figures. "
            "<br><b>Decision support only</b>: the segments and figures must be reviewed and "
            "corrected by a physician; they are not a treatment decision. "
            "See <a href='https://github.com/StrokePerfusionSeg/StrokePerfusionSeg'>the documentation</a>."
        )
        self.parent.acknowledgementText = (
            "Implements the method of L. Tomasetti, M. Khanmohammadi, K. Engan, L. J. Hollesli and "
            "K. D. Kurz, 'Multi-input segmentation of damaged brain in acute ischemic stroke "
            "patients using slow fusion with skip connection'. Perfusion analysis follows "
            "published bcSVD/oSVD deconvolution methods."
        )
        slicer.app.connect("startupCompleted()", _onStartupCompleted)


def _onStartupCompleted():
    """Register the sample study and the lesion terminology once Slicer has started."""
    terminologies = slicer.modules.terminologies.logic() if hasattr(slicer.modules, "terminologies") else None
    if terminologies is not None and TERMINOLOGY_FILE.is_file():
        mrmlSegmentation.load_terminology(terminologies)
    _registerSampleData()


def _registerSampleData():
    """A phantom study made on request by the library's digital phantom: usable offline."""
    import SampleData

    iconsPath = Path(__file__).parent / "Resources" / "Icons"
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=MODULE_TITLE,
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(iconsPath / "StrokePerfusionSeg.png"),
        uris=None,
        fileNames=None,
        nodeNames=None,
        loadFileType=None,
        customDownloader=_loadPhantomStudy,
    )


def _loadPhantomStudy(source=None):
    """Generate the phantom LVO study (fixed seed, 128x128, 8 slices) and load its maps, MIP and CTP."""
    from StrokePerfusionSegLib.phantom import PhantomConfig, generate_case

    case = generate_case("phantom-lvo", "LVO", seed=5, config=PhantomConfig(size=128, slices=8))
    nodes = mrmlNodes.add_case_volumes(slicer.mrmlScene, case)
    return list(nodes.values())


#
# Parameter node
#


@parameterNodeWrapper
class StrokePerfusionSegParameterNode:
    """Everything the panel edits; saved with the scene."""

    cbfVolume: vtkMRMLVolumeNode
    cbvVolume: vtkMRMLVolumeNode
    ttpVolume: vtkMRMLVolumeNode
    tmaxVolume: vtkMRMLVolumeNode
    mipVolume: vtkMRMLVolumeNode
    ctpNode: vtkMRMLNode
    frameInterval: Annotated[float, WithinRange(0.0, 60.0)] = 0.0  # s; 0 = from the series
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

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)

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

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

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
        if not self._parameterNode.method:
            self._parameterNode.method = (self.logic.availableModels() or [THRESHOLD_METHOD])[0]
        self._autoFillInputs()

    def _autoFillInputs(self) -> None:
        """Fill empty map selectors where exactly one loaded volume names that map."""
        if not self._parameterNode:
            return
        for name, node in mrmlNodes.guess_map_nodes(slicer.mrmlScene).items():
            parameter = dict(MAP_PARAMETERS)[name]
            if getattr(self._parameterNode, parameter) is None:
                setattr(self._parameterNode, parameter, node)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _missingInputs(self) -> list[str]:
        """What the chosen method needs and the panel lacks: its maps, and the NIHSS if it reads it."""
        parameters = self._parameterNode
        required, usesNihss = self.logic.methodNeeds(parameters.method or THRESHOLD_METHOD)
        missing = [name.upper() for name, parameter in MAP_PARAMETERS
                   if name in required and getattr(parameters, parameter) is None]
        if usesNihss and parameters.nihss < 0:
            missing.append("NIHSS")
        return missing

    def _checkCanApply(self, caller=None, event=None) -> None:
        if not self._parameterNode or self._busy:
            return
        missing = self._missingInputs()
        self.ui.applyButton.enabled = not missing
        self.ui.applyButton.toolTip = (
            "Select " + ", ".join(missing) if missing else "Segment the ischemic core and penumbra"
        )
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
                    self.ui.statusLabel.text = "Cancelled: the scene was left as it was."
        finally:
            self._busy = False
            self.ui.cancelButton.enabled = False
            self.ui.progressBar.hide()
            self._checkCanApply()

    def onCancelButton(self) -> None:
        self._cancelRequested = True
        self.ui.statusLabel.text = "Cancelling..."

    def onApplyButton(self) -> None:
        def work():
            if not self.logic.ensureDependencies(self._parameterNode.method):
                self.ui.statusLabel.text = "Dependencies not installed: nothing was done."
                return
            result = self.logic.segment(self._parameterNode, progress=self._progress, cancel=self._cancelled)
            self._parameterNode.outputSegmentation = result.segmentation_node
            self._parameterNode.outputTable = result.table_node
            self.ui.resultsTableView.setMRMLTableNode(result.table_node)
            seconds = result.timings.get("total", 0.0)
            notes = "<br>".join(result.notes)
            self.ui.statusLabel.text = f"Done on {result.device} in {seconds:.1f} s." + (f"<br>{notes}" if notes else "")
            slicer.util.setSliceViewerLayers(background=self._parameterNode.cbfVolume, fit=True)

        self._run("Segmentation failed.", work)

    def onComputeMapsButton(self) -> None:
        def work():
            if not self.logic.ensureDependencies(THRESHOLD_METHOD):
                return
            interval = self._parameterNode.frameInterval or None
            computed = self.logic.computeMaps(self._parameterNode.ctpNode, interval,
                                              progress=self._progress, cancel=self._cancelled)
            for name, parameter in MAP_PARAMETERS:
                if name in computed.nodes:
                    setattr(self._parameterNode, parameter, computed.nodes[name])
            self.ui.statusLabel.text = "<br>".join(
                ["Perfusion maps computed: " + ", ".join(n.upper() for n in computed.nodes), *computed.notes])

        self._run("Computing perfusion maps failed.", work)

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

    def getParameterNode(self):
        return StrokePerfusionSegParameterNode(super().getParameterNode())

    def ensureDependencies(self, method: str) -> bool:
        """Install what is missing, asking first; False when the user declines.

        PyTorch comes from the PyTorch extension (``PyTorchUtils``, which picks the build for
        the GPU); the rest from ``Resources/requirements.txt``. Thresholding needs no PyTorch.
        """
        if method != THRESHOLD_METHOD and not self._ensureTorch():
            return False
        requirements = Path(__file__).parent / "Resources" / "requirements.txt"
        if hasattr(slicer, "packaging"):
            return bool(slicer.packaging.pip_ensure(
                slicer.packaging.load_requirements(str(requirements)), requester=MODULE_TITLE))
        import importlib.util

        if all(importlib.util.find_spec(name) for name in REQUIRED_IMPORTS):
            return True
        if not slicer.util.confirmOkCancelDisplay(
            f"{MODULE_TITLE} needs a few Python packages ({', '.join(REQUIRED_IMPORTS)}). Install them now?"
        ):
            return False
        slicer.util.pip_install(["-r", str(requirements)])
        return True

    def _ensureTorch(self) -> bool:
        try:
            import torch  # noqa: F401

            return True
        except ImportError:
            pass
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(
                "The PyTorch extension is missing: install 'PyTorch' from the Extensions Manager and restart."
            )
            return False
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.torchInstalled():
            return True
        if not slicer.util.confirmOkCancelDisplay(
            "The segmentation model needs PyTorch (about 1-3 GB download). Install it now?"
        ):
            return False
        return torchLogic.installTorch(askConfirmation=False) is not None

    def availableModels(self) -> list:
        """Model ids of the registry, the default model first (empty when none is registered)."""
        try:
            from StrokePerfusionSegLib.registry import load_registry
        except ImportError:  # its packages are installed on first Apply
            logging.info("model registry not importable yet; offering thresholding only")
            return []
        registry = load_registry()
        others = sorted(set(registry.models) - {registry.default_model_id})
        return ([registry.default_model_id] if registry.default_model_id else []) + others

    def methodNeeds(self, method: str) -> tuple:
        """(required map names, reads NIHSS) of a method, from its manifest (no PyTorch needed)."""
        try:
            from StrokePerfusionSegLib.pipeline import method_needs

            return method_needs(method)
        except (ImportError, InputError) as error:  # not installed yet, or a broken bundle: Apply says why
            logging.info("requirements of %s unknown: %s", method, error)
            return (), False

    def inputNodes(self, parameters) -> dict:
        """Map name -> selected volume node (None when not selected)."""
        return {name: getattr(parameters, parameter) for name, parameter in MAP_PARAMETERS}

    def segment(self, parameters, progress=None, cancel=None):
        """Run the pipeline on the panel's parameters; returns ``mrml.study.PanelResult``."""
        nodes = {name: node for name, node in self.inputNodes(parameters).items() if node is not None}
        if not nodes:
            raise InputError("no input volumes: select the CBF, CBV, TTP, Tmax and MIP volumes")
        return mrmlStudy.segment_volumes(
            slicer.mrmlScene,
            nodes,
            method=parameters.method or THRESHOLD_METHOD,
            nihss=parameters.nihss if parameters.nihss >= 0 else None,
            segmentation_node=parameters.outputSegmentation,
            table_node=parameters.outputTable,
            device=parameters.device,
            progress=progress,
            cancel=cancel,
        )

    def computeMaps(self, ctpNode, frameInterval=None, progress=None, cancel=None) -> dict:
        """Perfusion maps from a 4D CTP node into scalar volume nodes (see ``mrml.ctp.compute_map_volumes``)."""
        return mrmlCtp.compute_map_volumes(
            slicer.mrmlScene, ctpNode, dt_s=frameInterval, progress=progress, cancel=cancel
        )


#
# Test
#


class StrokePerfusionSegTest(ScriptedLoadableModuleTest):
    """Loads the phantom sample study and runs the whole path, as a user would."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentPhantomStudy()

    def test_SegmentPhantomStudy(self):
        self.delayDisplay("Loading the phantom sample study")
        import SampleData

        _registerSampleData()
        nodes = SampleData.downloadSample(SAMPLE_NAME)
        self.assertTrue(nodes)

        logic = StrokePerfusionSegLogic()
        parameters = logic.getParameterNode()
        for name, node in mrmlNodes.guess_map_nodes(slicer.mrmlScene).items():
            setattr(parameters, dict(MAP_PARAMETERS)[name], node)
        parameters.method = THRESHOLD_METHOD
        self.assertTrue(logic.ensureDependencies(THRESHOLD_METHOD))

        self.delayDisplay("Segmenting with thresholds")
        result = logic.segment(parameters)
        segmentation = result.segmentation_node.GetSegmentation()
        self.assertEqual(set(segmentation.GetSegmentIDs()), {"IschemicCore", "Penumbra"})
        self.assertEqual(segmentation.GetSegment("IschemicCore").GetName(), "Ischemic core")
        values = mrmlSegmentation.table_values(result.table_node)
        self.assertAlmostEqual(values["Ischemic core"], result.volumes.core_ml, places=6)

        self.delayDisplay("Re-running replaces the segments")
        parameters.outputSegmentation = result.segmentation_node
        parameters.outputTable = result.table_node
        again = logic.segment(parameters)
        self.assertIs(again.segmentation_node, result.segmentation_node)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 1)
        self.delayDisplay("Test passed")
