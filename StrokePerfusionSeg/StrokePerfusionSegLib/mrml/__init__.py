"""MRML glue: the only part of the library that touches Slicer's scene.

* :mod:`.nodes`         volume and CTP sequence nodes: geometry (RAS <-> LPS), arrays, files, Subject Hierarchy, auto-fill
* :mod:`.study`         selected volumes -> Study -> pipeline -> segments and table (the panel's Apply)
* :mod:`.segmentation`  lesion segments, the volumes table, terminology loading
* :mod:`.ctp`           a 4D CTP sequence / multi-volume node -> perfusion map volumes (with the analysis' notes)

Nothing here imports ``slicer.app``, ``qt`` or ``slicer.util`` or reaches for a global scene:
the caller hands in the scene (and the Terminologies logic), so the same code runs inside 3D
Slicer and on the ``slicer-core`` wheel (how CI tests it).
"""
