"""StrokePerfusionSegLib: Slicer-free core of StrokePerfusionSeg.

Ischemic core and penumbra segmentation from CT perfusion. This package never imports
``slicer`` or ``qt`` (except :mod:`StrokePerfusionSegLib.mrml`, which is handed the
scene and module logics by its caller).

Conventions used throughout (see ``docs/architecture.md``):

* 3D arrays are indexed ``(z, y, x)`` and 4D CTP arrays ``(t, z, y, x)``, the order that
  ``SimpleITK.GetArrayFromImage`` returns.
* Pure numerical functions take ``spacing`` in array-axis order ``(z, y, x)`` in mm, like
  scikit-image. :class:`~StrokePerfusionSegLib.imageio.Geometry` stores ITK order ``(x, y, z)``.
* Label values are 0 background, 1 brain, 2 penumbra, 3 core (:mod:`.labels`).
"""

__version__ = "0.1.0"
