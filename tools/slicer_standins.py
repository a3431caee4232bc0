"""The smallest Qt, CTK and Slicer-application stand-ins that Slicer's pure-Python modules need.

Used by ``tools/slicer_contract.py`` only: Slicer's own ``slicer.util``,
``slicer.parameterNodeWrapper``, ``slicer.ScriptedLoadableModule``, ``slicer.packaging`` and
``SampleData`` run unchanged on top of these, with the real MRML of the ``slicer-core`` wheel.

What is imitated, and how closely (PythonQt behaviour, as Slicer's code relies on it):

* Qt properties are Python attributes (``widget.text = ...``) and setters (``setText``);
  unknown non-dynamic properties in a ``.ui`` are reported, as ``QUiLoader`` warns.
* Signals: ``widget.clicked.connect(fn)`` and ``widget.connect("clicked(bool)", fn)``; a slot
  taking fewer arguments than the signal gets the first ones (PythonQt trims them).
* Spin boxes clamp to their range; combo boxes keep items and the current index.
* ``qMRMLNodeComboBox`` accepts only nodes of its scene whose class is in ``nodeTypes``
  (sub-classes only with ``showChildNodeTypes``): any other node leaves it empty, as the real
  widget does, and the change is signalled.
* ``QTimer.singleShot`` callbacks run at the next ``slicer.app.processEvents()``.
"""

from __future__ import annotations

import inspect
import sys
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path

# --- signals -----------------------------------------------------------------------------------


def _call_trimmed(slot, args):
    """Call ``slot`` with as many leading ``args`` as it accepts (PythonQt's behaviour)."""
    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return slot(*args)
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return slot(*args)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return slot(*args[: len(positional)])


class BoundSignal:
    def __init__(self):
        self._slots = []

    def connect(self, slot):
        self._slots.append(slot)

    def disconnect(self, slot=None):
        if slot is None:
            self._slots.clear()
        elif slot in self._slots:
            self._slots.remove(slot)
        else:
            raise RuntimeError("disconnect: slot was not connected")

    def emit(self, *args):
        for slot in list(self._slots):
            _call_trimmed(slot, args)


class Signal:
    """Class attribute giving each instance its own :class:`BoundSignal`."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return instance.__dict__.setdefault("_signal_" + self.name, BoundSignal())


# --- qt ----------------------------------------------------------------------------------------


class QObject:
    destroyed = Signal()

    def __init__(self, parent=None):
        self._parent = None
        self._children = []
        self._dynamic = {}
        self.objectName = ""
        if parent is not None:
            self.setParent(parent)

    @property
    def name(self):  # PythonQt: ``name`` is ``objectName``
        return self.objectName

    @name.setter
    def name(self, value):
        self.objectName = value

    def setObjectName(self, value):
        self.objectName = value

    def setParent(self, parent):
        if self._parent is not None:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None):
        found = []
        for child in self._children:
            if cls is None or isinstance(child, cls):
                found.append(child)
            found.extend(child.findChildren(cls))
        return found

    def property(self, name):
        if name in self._dynamic:
            return self._dynamic[name]
        return getattr(self, name, None) if not name.startswith("_") else None

    def setProperty(self, name, value):
        self._dynamic[name] = value

    def connect(self, signature, slot):
        getattr(self, signature.split("(")[0]).connect(slot)

    def disconnect(self, signature, slot):
        getattr(self, signature.split("(")[0]).disconnect(slot)

    def deleteLater(self):
        pass

    def isWidgetType(self):
        return False


class QWidget(QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self._layout = None

    def isWidgetType(self):
        return True

    def setLayout(self, layout):
        self._layout = layout
        layout._owner = self

    def layout(self):
        return self._layout

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setEnabled(self, value):
        self.enabled = bool(value)

    def setToolTip(self, value):
        self.toolTip = value


class _Layout(QObject):
    def __init__(self, parent=None):
        super().__init__()
        self._owner = None
        self.items = []
        if parent is not None:
            parent.setLayout(self)

    def addWidget(self, widget, *args):
        self.items.append(widget)
        if self._owner is not None:
            widget.setParent(self._owner)

    def addLayout(self, layout, *args):
        self.items.append(layout)

    def addRow(self, *items):
        self.items.extend(items)

    def addStretch(self, *args):
        pass


class QVBoxLayout(_Layout):
    pass


class QHBoxLayout(_Layout):
    pass


class QGridLayout(_Layout):
    pass


class QFormLayout(_Layout):
    pass


class QLabel(QWidget):
    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.wordWrap = False

    def setText(self, value):
        self.text = value


class QAbstractButton(QWidget):
    clicked = Signal()
    toggled = Signal()

    def __init__(self, text="", parent=None):
        super().__init__(parent)
        self.text = text
        self.checkable = False
        self._checked = False

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        value = bool(value) and self.checkable
        if value != self._checked:
            self._checked = value
            self.toggled.emit(value)

    def setChecked(self, value):
        self.checked = value

    def isChecked(self):
        return self._checked

    def click(self):
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self._checked
        self.clicked.emit(self._checked)


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.checkable = True


class QProgressBar(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.minimum = 0
        self.maximum = 100
        self.value = 0


class QComboBox(QWidget):
    currentIndexChanged = Signal()
    currentTextChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []
        self._index = -1

    def addItem(self, text, userData=None):
        self._items.append((str(text), userData))
        if self._index < 0:
            self.currentIndex = 0

    def clear(self):
        self._items.clear()
        self.currentIndex = -1

    @property
    def count(self):
        return len(self._items)

    def itemText(self, index):
        return self._items[index][0]

    def itemData(self, index):
        return self._items[index][1]

    def findText(self, text):
        return next((i for i, (t, _) in enumerate(self._items) if t == text), -1)

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        index = index if 0 <= index < len(self._items) else -1
        if index != self._index:
            self._index = index
            self.currentIndexChanged.emit(index)
            self.currentTextChanged.emit(self.currentText)

    def setCurrentIndex(self, index):
        self.currentIndex = index

    @property
    def currentText(self):
        return self._items[self._index][0] if self._index >= 0 else ""

    def setCurrentText(self, text):
        self.currentIndex = self.findText(text)


class _SpinBox(QWidget):
    valueChanged = Signal()
    _type = int

    def __init__(self, parent=None):
        super().__init__(parent)
        self._minimum = self._type(0)
        self._maximum = self._type(99)
        self._value = self._type(0)
        self.singleStep = self._type(1)
        self.specialValueText = ""
        self.suffix = ""

    def _clamp(self, value):
        return min(max(self._type(value), self._minimum), self._maximum)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        value = self._clamp(value)
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)

    def setValue(self, value):
        self.value = value

    @property
    def minimum(self):
        return self._minimum

    @minimum.setter
    def minimum(self, value):
        self._minimum = self._type(value)
        self._maximum = max(self._maximum, self._minimum)
        self.value = self._value

    @property
    def maximum(self):
        return self._maximum

    @maximum.setter
    def maximum(self, value):
        self._maximum = self._type(value)
        self._minimum = min(self._minimum, self._maximum)
        self.value = self._value

    def setMinimum(self, value):
        self.minimum = value

    def setMaximum(self, value):
        self.maximum = value

    def setRange(self, low, high):
        self.minimum = low
        self.maximum = high


class QSpinBox(_SpinBox):
    _type = int


class QDoubleSpinBox(_SpinBox):
    _type = float

    def __init__(self, parent=None):
        super().__init__(parent)
        self.decimals = 2


class QSlider(QSpinBox):
    pass


class QLineEdit(QWidget):
    textChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""


class QTextEdit(QWidget):
    textChanged = Signal()


class QDialog(QWidget):
    def exec_(self):
        return 0

    def close(self):
        self.visible = False


class QMessageBox(QDialog):
    NoButton, Ok, Cancel, Yes, No = 0, 0x400, 0x400000, 0x4000, 0x10000
    Information, Warning, Critical, Question = 1, 2, 3, 4


class QTimer(QObject):
    pending = []

    @staticmethod
    def singleShot(msec, callback):
        QTimer.pending.append(callback)


class QIcon:
    def __init__(self, path=""):
        self.path = str(path)


class QColor:
    def __init__(self, *args):
        self.args = args


class QSettings:
    _store: dict = {}

    def value(self, key, default=None):
        return self._store.get(key, default)

    def setValue(self, key, value):
        self._store[key] = value

    def contains(self, key):
        return key in self._store


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = Path(path)

    def exists(self):
        return self.path.is_file()

    def open(self, mode):
        return self.exists()


class QApplication:
    @staticmethod
    def setOverrideCursor(cursor):
        pass

    @staticmethod
    def restoreOverrideCursor():
        pass


class Qt:
    WaitCursor, ArrowCursor = 16, 0
    Vertical, Horizontal = 2, 1


# --- ctk and Slicer widgets ---------------------------------------------------------------------


class ctkCollapsibleButton(QAbstractButton):
    contentsCollapsed = Signal()

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.collapsed = False


class ctkComboBox(QComboBox):
    pass


class ctkCheckablePushButton(QPushButton):
    pass


class ctkDoubleSpinBox(QDoubleSpinBox):
    pass


class ctkSliderWidget(QDoubleSpinBox):
    pass


class ctkDoubleSlider(QDoubleSpinBox):
    pass


class ctkRangeWidget(QWidget):
    pass


class ctkPathLineEdit(QWidget):
    pass


class ctkDirectoryButton(QWidget):
    pass


class ctkColorPickerButton(QWidget):
    pass


class ctkMessageBox(QMessageBox):
    pass


class qMRMLWidget(QWidget):
    mrmlSceneChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


class qSlicerWidget(qMRMLWidget):
    pass


class qSlicerScriptedLoadableModuleWidget(qSlicerWidget):
    """The parent Slicer gives a module's Widget; shown (entered) here."""

    isEntered = True


class qMRMLNodeComboBox(QWidget):
    currentNodeChanged = Signal()
    currentNodeIDChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.nodeTypes = []
        self.showChildNodeTypes = True
        self.noneEnabled = False
        self.addEnabled = True
        self.removeEnabled = True
        self.renameEnabled = False
        self._scene = None
        self._current = None

    def setMRMLScene(self, scene):
        self._scene = scene
        if self._current is not None and not self._listed(self._current):
            self._set(None)

    def mrmlScene(self):
        return self._scene

    def _listed(self, node) -> bool:
        if self._scene is None or node is None or not self._scene.IsNodePresent(node):
            return False
        if self.showChildNodeTypes:
            return any(node.IsA(name) for name in self.nodeTypes)
        return node.GetClassName() in self.nodeTypes

    def nodes(self):
        """The nodes the user can pick (in scene order)."""
        if self._scene is None:
            return []
        all_nodes = [self._scene.GetNthNode(i) for i in range(self._scene.GetNumberOfNodes())]
        return [node for node in all_nodes if self._listed(node)]

    def _set(self, node):
        if node is not self._current:
            self._current = node
            self.currentNodeChanged.emit(node)
            self.currentNodeIDChanged.emit(node.GetID() if node is not None else "")

    def setCurrentNode(self, node):
        self._set(node if self._listed(node) else None)

    def currentNode(self):
        if self._current is not None and not self._listed(self._current):
            self._set(None)  # removed from the scene meanwhile
        return self._current

    @property
    def currentNodeID(self):
        node = self.currentNode()
        return node.GetID() if node is not None else ""


class qMRMLTableView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._table = None

    def setMRMLScene(self, scene):
        self._scene = scene

    def setMRMLTableNode(self, node):
        self._table = node

    def mrmlTableNode(self):
        return self._table


class qMRMLSliderWidget(ctkSliderWidget):
    pass


class qMRMLSpinBox(ctkDoubleSpinBox):
    pass


# --- .ui files ---------------------------------------------------------------------------------


def _value(element):
    """A property value element of Qt Designer XML as a Python value."""
    kind = element.tag
    if kind in ("string", "cstring", "enum", "set"):
        return element.text or ""
    if kind == "bool":
        return element.text == "true"
    if kind == "number":
        return int(element.text)
    if kind == "double":
        return float(element.text)
    if kind == "stringlist":
        return [item.text for item in element.findall("string")]
    return None  # geometry, size policy, fonts: layout only


class QUiLoader:
    """Builds stand-in widgets from a Qt Designer ``.ui`` file, with its signal connections.

    ``warnings`` lists what Qt's loader would warn about (unknown classes and properties).
    """

    warnings: list = []

    def load(self, qfile):
        root = ElementTree.parse(str(qfile.path)).getroot()
        top = self._widget(root.find("widget"), None)
        names = {w.objectName: w for w in [top, *top.findChildren()]}
        for connection in root.iterfind("connections/connection"):
            sender, receiver = names[connection.findtext("sender")], names[connection.findtext("receiver")]
            signal, slot = connection.findtext("signal"), connection.findtext("slot")
            getattr(sender, signal.split("(")[0]).connect(getattr(receiver, slot.split("(")[0]))
        return top

    def _widget(self, element, parent):
        class_name = element.get("class")
        cls = WIDGET_CLASSES.get(class_name)
        if cls is None:
            QUiLoader.warnings.append(f"unknown widget class {class_name}")
            cls = QWidget
        widget = cls()
        widget.objectName = element.get("name")
        if parent is not None:
            widget.setParent(parent)
        for prop in element.findall("property"):
            self._property(widget, prop)
        for item in element.findall("item"):  # combo-box items
            widget.addItem(item.find("property/string").text or "")
        for child in element.iter("widget"):
            if child is not element and self._owner(element, child):
                self._widget(child, widget)
        return widget

    @staticmethod
    def _owner(element, child):
        """True when ``child`` belongs directly to ``element`` (through layouts and items only)."""
        stack = list(element)
        while stack:
            node = stack.pop()
            if node is child:
                return True
            if node.tag in ("layout", "item"):
                stack.extend(node)
        return False

    @staticmethod
    def _property(widget, prop):
        name = prop.get("name")
        value = _value(prop[0])
        if prop.get("stdset") == "0":
            widget.setProperty(name, value)
        elif name in ("geometry", "sizeHint", "minimumSize", "maximumSize", "sizePolicy", "orientation"):
            return
        elif hasattr(widget, name):
            setattr(widget, name, value)
        else:
            QUiLoader.warnings.append(f"{type(widget).__name__} {widget.objectName}: no property {name}")


WIDGET_CLASSES = {
    cls.__name__: cls
    for cls in (
        QWidget, QLabel, QPushButton, QToolButton, QCheckBox, QProgressBar, QComboBox, QSpinBox,
        QDoubleSpinBox, QSlider, QLineEdit, QTextEdit, ctkCollapsibleButton, ctkComboBox,
        ctkCheckablePushButton, ctkDoubleSpinBox, ctkSliderWidget, ctkRangeWidget, ctkPathLineEdit,
        ctkDirectoryButton, ctkColorPickerButton, qMRMLWidget, qMRMLNodeComboBox, qMRMLTableView,
        qMRMLSliderWidget, qMRMLSpinBox,
    )
}


# --- the application ---------------------------------------------------------------------------


class _ModuleManager(QObject):
    moduleAboutToBeUnloaded = Signal()


class SlicerApplication(QObject):
    """``slicer.app``: testing mode on (as ``Slicer --testing``), no main window."""

    startupCompleted = Signal()
    applicationName = "Slicer"
    documentationBaseUrl = "https://slicer.readthedocs.io/en/latest/"

    def __init__(self, major: int, minor: int):
        super().__init__()
        self.majorVersion = major
        self.minorVersion = minor
        self._moduleManager = _ModuleManager()

    def testingEnabled(self):
        return True

    def processEvents(self):
        while QTimer.pending:
            QTimer.pending.pop(0)()

    def moduleManager(self):
        return self._moduleManager

    def moduleDocumentationUrl(self, moduleName):
        return self.documentationBaseUrl + f"user_guide/modules/{moduleName.lower()}.html"

    def translate(self, context, text):
        return text

    def topLevelWidgets(self):
        return []

    def layoutManager(self):
        return None

    def setOverrideCursor(self, cursor):
        pass

    def restoreOverrideCursor(self):
        pass

    def userSettings(self):
        return QSettings()

    def settings(self):
        return QSettings()


class ScriptedModuleParent(QObject):
    """What ``qSlicerScriptedLoadableModule`` hands to a module class as ``parent``."""

    def __init__(self, path):
        super().__init__()
        self.path = str(path)
        self.title = ""
        self.categories = []
        self.dependencies = []
        self.contributors = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.icon = None
        self.hidden = False


def _placeholders(prefixes: tuple[str, ...]):
    """Module ``__getattr__`` giving a distinct widget class for any other name with ``prefixes``.

    Slicer's connectors test ``type(widget) in (ctk.ctkRangeWidget, ...)``: the classes must
    exist, but no panel of this module uses them.
    """
    made = {}

    def __getattr__(name):
        if not name.startswith(prefixes):
            raise AttributeError(name)
        return made.setdefault(name, type(name, (QWidget,), {}))

    return __getattr__


def install(major: int, minor: int) -> SlicerApplication:
    """Put ``qt`` and ``ctk`` into ``sys.modules`` and the Slicer widgets into ``slicer``."""
    qt = types.ModuleType("qt")
    for name, value in list(globals().items()):
        if name.startswith("Q") or name == "Qt":
            setattr(qt, name, value)
    ctk = types.ModuleType("ctk")
    for name, value in list(globals().items()):
        if name.startswith("ctk"):
            setattr(ctk, name, value)
    qt.__getattr__ = _placeholders(("Q",))
    ctk.__getattr__ = _placeholders(("ctk",))
    sys.modules["qt"] = qt
    sys.modules["ctk"] = ctk
    import slicer

    for cls in (qMRMLWidget, qSlicerWidget, qSlicerScriptedLoadableModuleWidget, qMRMLNodeComboBox, qMRMLTableView, qMRMLSliderWidget, qMRMLSpinBox):
        setattr(slicer, cls.__name__, cls)
    slicer.__getattr__ = _placeholders(("qMRML", "qSlicer"))
    for name in ("modules", "moduleNames"):  # as Slicer's slicer/__init__.py makes them
        module = types.ModuleType(name)
        sys.modules[f"slicer.{name}"] = module
        setattr(slicer, name, module)
    app = SlicerApplication(major, minor)
    slicer.app = app
    return app
