"""The analysis service under the app: one request from upload to report, as typed events.

``AnalysisService(settings).verdicts(image, detector, face_crop)`` -> :class:`Verdicts`;
``.explain(image, detector, methods, params, ...)`` -> iterator of :class:`VerdictsReady`,
:class:`MapReady`, :class:`Done`; ``.report(...)`` / ``.write_zip(...)``. The UI, the API
endpoints and ``python -m explainers.make_grid`` use it; see ``docs/architecture.md``.
Importing this package imports no model library.
"""
from .events import Done, Event, MapReady, Verdicts, VerdictsReady
from .service import ALL, AUTO, AnalysisService, cached_panel, compose_grid, display_name

__all__ = ["AnalysisService", "Verdicts", "VerdictsReady", "MapReady", "Done", "Event", "ALL", "AUTO",
           "cached_panel", "compose_grid", "display_name"]
