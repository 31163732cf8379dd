"""The analysis service: one request's path from upload to report, without any UI.

    upload -> decode -> face -> preprocess -> model -> verdict -> explainers -> render -> report

:class:`AnalysisService` owns the result cache, the start-up preload, the private model
copies the explainers run on, the verdict fan-out over detectors, the streaming
explanation (typed events, :mod:`analysis.events`) and the report and zip. The Gradio app,
its API endpoints and ``python -m explainers.make_grid`` all call it.

Serving model: verdicts may run concurrently (several Gradio workers); explanations run
one at a time (the app's "explain" concurrency group has limit 1) on a private deep copy
of each detector, because Grad-CAM and LRP hook into the network while they run and a
verdict computed on the same module at that moment would fire the hooks.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from detector.errors import DetectorError, InputError, WeightsError
from detector.settings import Settings
from explainers.cache import ResultCache, make_key, source_sha256

from .events import Done, Event, MapReady, Verdicts, VerdictsReady
from .upload import image_source

__all__ = ["AnalysisService", "ALL", "AUTO", "cached_panel", "compose_grid", "display_name"]

log = logging.getLogger(__name__)

ALL = "all"  #: detector choice: every detector with weights ("Compare all")
AUTO = "auto"  #: explain-with choice: the most reliable available detector
#: The zip files the service writes are deleted after this many seconds.
ZIP_MAX_AGE_S = 3600


def display_name(detector: str) -> str:
    """The UI name of a detector (its spec's ``display_name``)."""
    from detector.specs import get_spec

    return get_spec(detector).display_name


def compose_grid(face: Any, results: Sequence[Any]) -> Any:
    """The side-by-side grid of the results' overlays (None if there is none or drawing failed)."""
    from explainers.render import grid

    # The overlays carry their own title, so the grid's tile titles stay empty.
    items = [("", r.overlay) for r in results if r.overlay is not None and not r.error]
    if not items:
        return None
    try:
        return grid(face, items, transparent=True)  # the page's background (light or dark) between tiles
    except Exception:  # the tabs still show each map
        log.exception("side-by-side grid failed")
        return None


@dataclasses.dataclass(frozen=True)
class _PackedPanel:
    """A ``PanelResult`` as the cache holds it: the overlay as lossless PNG bytes (about half the size)."""

    result: Any  #: the ``PanelResult`` with ``overlay=None``
    overlay_png: bytes | None


def _pack_panel(res: Any) -> _PackedPanel:
    """``res`` with its overlay PNG-encoded for the cache (the overlays are most of a panel's bytes)."""
    from explainers.report import png_bytes

    png = None if res.overlay is None else png_bytes(res.overlay, compress_level=1)
    return _PackedPanel(dataclasses.replace(res, overlay=None), png)


def _unpack_panel(packed: _PackedPanel) -> Any:
    """The ``PanelResult`` back from :func:`_pack_panel` (pixel-identical overlay)."""
    import io

    import numpy as np
    from PIL import Image

    if packed.overlay_png is None:
        return packed.result
    with Image.open(io.BytesIO(packed.overlay_png)) as im:
        overlay = np.asarray(im.convert("RGB"))
    return dataclasses.replace(packed.result, overlay=overlay)


def cached_panel(cache: ResultCache, image_sha: str, pred: Any, loaded: Any, methods: Sequence[str],
                 params: Mapping[str, Mapping[str, Any]] | None = None, face_crop: bool = True,
                 faithfulness: bool = True, preview_first: bool = False,
                 run_on: Any = None) -> Iterator[tuple[Any, bool]]:
    """Yield ``(PanelResult, was_cached)`` for each method in ``methods``, explaining ``pred.target``.

    Cached results come first (instantly); the missing methods are then computed by
    :func:`explainers.panel.iter_panel` and yielded one by one. ``pred`` is the
    ``Prediction`` (its ``input.tensor`` and CLAHE ``face`` are explained), ``loaded`` the
    ``LoadedModel`` (its spec and weights source are part of the cache key) and ``run_on``
    the ``LoadedModel`` to compute on (default ``loaded``; the service passes a private
    copy). Failed methods and previews (``pending``) are yielded but not cached; the cache holds
    each overlay as PNG bytes (lossless, about half the size of the array) and decodes it on a hit.
    """
    from explainers.panel import iter_panel

    params = {m: dict((params or {}).get(m, {})) for m in methods}
    spec = loaded.spec
    target = int(pred.target)
    context = {"target": target, "face_crop": bool(face_crop), "faithfulness": bool(faithfulness),
               "weights": getattr(loaded, "source", "")}
    keys = {m: make_key(image_sha, spec.name, m, {"params": params[m], **context}) for m in methods}
    todo = []
    for m in methods:
        hit = cache.get(keys[m])
        if hit is not None:
            yield _unpack_panel(hit), True
        else:
            todo.append(m)
    if not todo:
        return
    twin = run_on or loaded
    x = pred.input.tensor.to(twin.device)
    for res in iter_panel(twin.model, x, pred.input.face, target, spec=spec, methods=todo,
                          params={m: params[m] for m in todo}, faithfulness=faithfulness,
                          preview_first=preview_first, temperature=float(getattr(twin, "temperature", 1.0))):
        if res.error is None and not res.pending and res.method in keys:
            cache.put(keys[res.method], _pack_panel(res))
        yield res, False


class AnalysisService:
    """Verdicts, streamed explanations and reports, with one result cache (see the module docstring)."""

    def __init__(self, settings: Settings, cache: ResultCache | None = None, report_dir: Path | None = None) -> None:
        self.settings = settings
        self.cache = cache or ResultCache(settings.cache_entries, settings.cache_bytes)
        self.report_dir = report_dir or Path(tempfile.gettempdir()) / "deepfake-app-reports"
        self._preload: threading.Thread | None = None
        self._models_ready = threading.Event()
        self._copies: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._copies_lock = threading.Lock()
        #: (detector, method) -> seconds its last computed map took here, faithfulness included (see expected_seconds)
        self.method_seconds: dict[tuple[str, str], float] = {}
        self._verdicts_fn: Callable[..., Verdicts] = self._compute_verdicts
        self._panel_fn: Callable[..., Iterator[tuple[Any, bool]]] = self._compute_panel
        spaces = _zero_gpu_module(settings)
        if spaces is not None:  # Hugging Face ZeroGPU: only these calls get a GPU
            self._verdicts_fn = spaces.GPU(duration=120)(self._compute_verdicts)
            self._panel_fn = spaces.GPU(duration=120)(self._compute_panel)

    # ------------------------------------------------------------ start-up
    def start_preload(self) -> threading.Thread:
        """Run :meth:`preload` in a background thread (``python app.py`` does, unless DEEPFAKE_PRELOAD=0)."""
        self._preload = threading.Thread(target=self.preload, name="preload", daemon=True)
        self._preload.start()
        return self._preload

    def preload(self) -> None:
        """Load every detector whose weights are available, then import the explainers' libraries.

        Verdicts wait only for the first phase (:meth:`await_models`), so the first verdict
        after start does not pay for the explainer imports; explanations wait for both
        (:meth:`await_preload`). The server's memory then does not jump on the first request.
        """
        import importlib

        from detector.specs import list_specs
        from detector.weights import hub_repo_for, load_model, weights_status
        from explainers import METHOD_ORDER, get_explainer

        try:
            for lib in ("timm", "detector.models", "detector.predict"):
                importlib.import_module(lib)
            status = weights_status()
            for s in list_specs():
                if status.get(s.name) is None or hub_repo_for(s):
                    try:
                        lm = load_model(s.name)
                        log.info("loaded %s from %s", s.name, lm.source)
                    except DetectorError as e:  # its verdict will report the error
                        log.warning("detector %s unavailable: %s", s.name, e.message)
        finally:
            self._models_ready.set()
        for m in METHOD_ORDER:
            for lib in getattr(get_explainer(m), "requires", ()):
                try:
                    importlib.import_module(lib)
                except Exception as e:  # the method's tab will say what is missing
                    log.info("preloading %s for %s failed: %s", lib, m, e)

    def await_models(self) -> None:
        """Block until the start-up thread has loaded the detectors (no-op without preload)."""
        t = self._preload
        if t is not None and t is not threading.current_thread():
            while t.is_alive() and not self._models_ready.wait(0.1):
                pass

    def await_preload(self) -> None:
        """Block until the whole start-up is done: two threads importing the same libraries can deadlock."""
        t = self._preload
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join()

    # ------------------------------------------------------------ verdicts
    def verdicts(self, image: Any, detector: str, face_crop: bool = True) -> Verdicts:
        """Verdict of ``detector`` (errors raise) or of every detector ("all"; missing weights are listed).

        ``image`` is an upload payload, a path or bytes. Raises :class:`InputError` for a bad
        image or choice and :class:`WeightsError` when no requested detector has weights.
        """
        source, _ = image_source(image)
        return self._verdicts_fn(source, source_sha256(source), detector, bool(face_crop))

    def _compute_verdicts(self, source: str | bytes, sha: str, detector: str, face_crop: bool) -> Verdicts:
        from detector.predict import predict
        from detector.preprocess import load_image
        from detector.specs import list_specs

        from . import trust as trusts

        self.await_models()
        names = [s.name for s in list_specs()]
        if detector not in names + [ALL]:
            raise InputError(f"Unknown detector {detector!r}; choose one of: {', '.join(names + [ALL])}.",
                             "bad_choice")
        decoded: list[Any] = []

        def image() -> Any:  # decode once, only if something is not cached
            if not decoded:
                decoded.append(load_image(source))
            return decoded[0]

        facts = self.image_facts(sha, image, face_crop)
        preds, unavailable = [], {}
        for name in trusts.detector_order(names) if detector == ALL else [detector]:
            key = make_key(sha, name, "verdict", {"face_crop": face_crop})
            pred = self.cache.get(key)
            try:
                if pred is None:
                    pred = predict(image(), name, face_crop=face_crop)
                    self.cache.put(key, pred)
                preds.append(pred)
            except WeightsError as e:
                if detector != ALL:
                    raise
                unavailable[name] = e.message
        if not preds:
            raise WeightsError("No detector has weights yet: " + " ".join(unavailable.values()))
        trust = {p.model: trusts.trust(p, facts, face_crop) for p in preds}
        cons = trusts.consensus_view(preds) if detector == ALL else None
        return Verdicts(detector, face_crop, sha, preds, unavailable, trust, cons, facts)

    def image_facts(self, sha: str, image: Callable[[], Any], face_crop: bool) -> Any:
        """Size and face presence of the image (cached); refuses an image too small to score.

        Raises :class:`InputError` (code ``too_small``) with :func:`detector.reliability.input_refusal`'s
        message before any detector runs. In whole-image mode the face detector still runs, only to
        say whether the score can mean anything.
        """
        import numpy as np

        from detector.preprocess import detect_faces_full
        from detector.reliability import input_refusal

        from .trust import ImageFacts

        key = make_key(sha, "image", "facts", {"face_crop": face_crop})
        facts = self.cache.get(key)
        if facts is None:
            img = image().image
            refusal = input_refusal(img.size)
            if refusal:
                raise InputError(refusal, "too_small")
            found = None if face_crop else bool(detect_faces_full(np.asarray(img)))
            facts = ImageFacts((int(img.size[0]), int(img.size[1])), found)
            self.cache.put(key, facts)
        return facts

    # ------------------------------------------------------------ explanations
    def model_copy(self, loaded: Any) -> Any:
        """The ``LoadedModel`` to explain with: same weights, a private deep copy of the network.

        One copy per (detector, device), made on first use and again when the weights were
        reloaded, so verdicts can be served on the original while an explanation runs.
        """
        key = (loaded.spec.name, str(loaded.device))
        with self._copies_lock:
            item = self._copies.get(key)
            if item is None or item[0] is not loaded.model:
                item = (loaded.model, dataclasses.replace(loaded, model=copy.deepcopy(loaded.model)))
                self._copies[key] = item
            return item[1]

    def _compute_panel(self, sha: str, pred: Any, methods: list[str], params: Mapping[str, Mapping[str, Any]],
                       face_crop: bool) -> Iterator[tuple[Any, bool]]:
        from detector.weights import load_model

        from .memory import release_memory

        self.await_preload()
        loaded = load_model(pred.model)
        computed = False
        try:
            for res, cached in cached_panel(self.cache, sha, pred, loaded, methods, params=params,
                                            face_crop=face_crop, preview_first=True,
                                            run_on=self.model_copy(loaded)):
                computed |= not cached
                yield res, cached
        finally:
            if computed:
                release_memory()

    def explain(self, image: Any, detector: str, methods: Sequence[str],
                params: Mapping[str, Mapping[str, Any]] | None = None, face_crop: bool = True,
                explain_with: str | None = None, stream_grid: bool = False, write_zip: bool = True,
                progress: Callable[..., Any] | None = None) -> Iterator[Event]:
        """The whole analysis as typed events: :class:`VerdictsReady`, :class:`MapReady` per map, :class:`Done`.

        Args:
            image: upload payload, path or bytes.
            detector: a detector name or ``"all"`` (maps then explain ``explain_with``, else the
                most reliable available detector).
            methods: method names (any order; run cheapest first, reported in display order).
            params: ``{method: {parameter: value}}`` (already checked, see :mod:`analysis.params`).
            stream_grid: compose the side-by-side grid on each map that changes it (the UI shows it
                live); otherwise it is composed once, at the end.
            write_zip: write the zip (``Done.zip_path``); the grid CLI does not need it.
            progress: optional ``gr.Progress``-like callable.
        """
        from explainers import METHOD_ORDER

        t0 = time.perf_counter()
        source, name = image_source(image)
        sha = source_sha256(source)
        methods = [m for m in METHOD_ORDER if m in (methods or [])]
        params = params or {}
        if progress:
            progress(0.0, desc="Scoring the image")
        verdicts = self._verdicts_fn(source, sha, detector, bool(face_crop))
        pred, notes = self._pick_explained(verdicts.predictions, explain_with)
        yield VerdictsReady(verdicts, pred, notes)
        results: dict[str, tuple[Any, bool]] = {}
        grid, drawn = None, {}
        t_map = time.perf_counter()
        for res, cached in (self._panel_fn(sha, pred, methods, params, bool(face_crop)) if methods else ()):
            results[res.method] = (res, cached)
            if not res.pending:
                now = time.perf_counter()
                if not cached and not res.error:
                    self.method_seconds[(pred.model, res.method)] = now - t_map
                t_map = now
            done = sum(1 for r, _ in results.values() if not r.pending)
            if progress and not res.pending:
                progress((done, len(methods)), desc=f"{res.display_name} done", unit="maps")
            if stream_grid and drawn.get(res.method) is not res.overlay:
                drawn[res.method] = res.overlay
                grid = compose_grid(pred.face, [results[m][0] for m in METHOD_ORDER if m in results])
            yield MapReady(res, cached, done, len(methods), grid if stream_grid else None)
        ordered = [results[m][0] for m in METHOD_ORDER if m in results]
        if not stream_grid:
            grid = compose_grid(pred.face, ordered)
        report = self.report(verdicts, name, pred if methods else None, ordered,
                             [m for m, (_, c) in results.items() if c], {m: params.get(m, {}) for m in methods},
                             notes)
        zip_path = self.write_zip(report, pred, ordered, grid) if write_zip else None
        yield Done(verdicts, report, zip_path, grid, ordered, time.perf_counter() - t0)

    def expected_seconds(self, detector: str, methods: Sequence[str]) -> tuple[float, list[str]]:
        """(seconds the ``methods`` took for ``detector`` on their last computed run here, methods not measured yet).

        Measured on this server (wall time from one map to the next, faithfulness included), so
        it reflects this machine and its load; nothing is assumed for a method never run.
        """
        known = [self.method_seconds[(detector, m)] for m in methods if (detector, m) in self.method_seconds]
        return sum(known), [m for m in methods if (detector, m) not in self.method_seconds]

    @staticmethod
    def _pick_explained(preds: list[Any], explain_with: str | None) -> tuple[Any, list[str]]:
        by_name = {p.model: p for p in preds}
        if explain_with and explain_with != AUTO:
            if explain_with in by_name:
                return by_name[explain_with], []
            return preds[0], [f"{display_name(explain_with)} is not available; maps explain "
                              f"{display_name(preds[0].model)}."]
        return preds[0], []

    # ------------------------------------------------------------ report
    @staticmethod
    def report(verdicts: Verdicts, image_name: str | None, explained: Any | None, results: Sequence[Any],
               cached_methods: Sequence[str] = (), params: Mapping[str, Any] | None = None,
               notes: Sequence[str] = ()) -> dict:
        """The JSON report of one analysis (``explained`` is None when no map was asked for)."""
        from explainers import report as reports

        from .trust import consensus_json, verdict_json

        return reports.build_report(
            image_sha256=verdicts.image_sha256, image_name=image_name, face_crop=verdicts.face_crop,
            verdicts=[(p, display_name(p.model)) for p in verdicts.predictions],
            explained_with=explained.model if explained is not None else None,
            target=(explained.target, explained.label) if explained is not None else None, results=results,
            cached_methods=cached_methods, unavailable=verdicts.unavailable, params=params, notes=notes,
            verdict_extra={n: verdict_json(t) for n, t in verdicts.trust.items()},
            consensus=consensus_json(verdicts.consensus) if verdicts.consensus is not None else None)

    def write_zip(self, report: dict, pred: Any, results: Sequence[Any], grid: Any) -> str:
        """Write the report's zip into the service's temporary folder (deleting zips older than an hour)."""
        from explainers import report as reports

        self.report_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in self.report_dir.glob("*.zip"):
            try:
                if now - old.stat().st_mtime > ZIP_MAX_AGE_S:
                    old.unlink()
            except OSError:
                pass
        dest = self.report_dir / f"deepfake-report-{report['image']['sha256'][:12]}-{pred.model}-{int(now * 1000)}.zip"
        return str(reports.write_zip(report, dest, face_raw=pred.face_raw, face=pred.face, results=results,
                                     side_by_side=grid))


def _zero_gpu_module(settings: Settings) -> Any:
    """The ``spaces`` module on Hugging Face ZeroGPU (``SPACES_ZERO_GPU=true``), else None."""
    if not settings.zero_gpu:
        return None
    try:
        import spaces  # type: ignore
    except ImportError:
        return None
    return spaces
