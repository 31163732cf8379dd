"""Registries are the only lists: a throwaway method and a throwaway detector, each registered in
one place, appear in the UI choices, the API, the report and the bench. Plus the typed event
stream of the analysis service, and /explain's JSON parameters."""
from __future__ import annotations

import shutil

import pytest

from .conftest import FAST_DETECTOR, SMALL


@pytest.fixture()
def throwaway(app_server, monkeypatch):
    """Register method ``throwaway_grad`` and detector ``tiny_net`` (with a random checkpoint); undo after."""
    import torch

    from detector import specs
    from explainers import base
    from tests.conftest import write_tiny_checkpoints

    @base.register
    class ThrowawayExplainer(base.Explainer):
        name = "throwaway_grad"
        display_name = "Throwaway"
        meaning = "Input magnitude times a scale (a test method)."
        default_params = {"scale": 2}
        display_order = 70
        run_cost = 0
        tunables = (base.Tunable("scale", "Throwaway: scale", 1, 10),)

        def _explain(self, model, x, target, spec, params):
            return base.RawAttribution(x.abs().sum(1)[0] * float(params["scale"]) + torch.zeros(()), signed=False)

    spec = specs.ModelSpec(name="tiny_net", display_name="Tiny Net", architecture="custom_cnn", input_size=64,
                           mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), gradcam_layer="features.relu4_2",
                           description="A throwaway detector.", latency_target_ms=999.0)
    monkeypatch.setitem(specs.SPECS, "tiny_net", spec)
    write_tiny_checkpoints(spec.local_dir.parent, ("tiny_net",))
    try:
        yield spec
    finally:
        base.unregister("throwaway_grad")
        shutil.rmtree(spec.local_dir, ignore_errors=True)


def _choices(demo, elem_id):
    (comp,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    return comp


def test_throwaway_method_and_detector_appear_everywhere(app_server, throwaway, face_image, capsys):
    import gradio as gr

    from analysis import text
    from detector.bench import main as bench

    _, app = app_server
    demo = app.build(app.service())  # a fresh UI built from the registries
    # no metrics.json: ranked last, labelled as such
    assert _choices(demo, "detector").choices[-2] == ("Tiny Net (unknown reliability)", "tiny_net")
    assert ("Throwaway", "throwaway_grad") in _choices(demo, "methods").choices
    assert _choices(demo, "param-throwaway_grad").label == "Throwaway: scale"
    tabs = {b.id for b in demo.blocks.values() if isinstance(b, gr.Tab)}
    assert "tab-throwaway_grad" in tabs
    assert "Tiny Net" in text.about_md({}) and "Throwaway" in text.about_md({})
    from detector.specs import SPECS

    assert f"{text._count(len(SPECS))} detectors give" in text.intro_md()  # counted, tiny_net included
    assert text._count(4) == "Four"

    verdicts = app.api_predict(str(face_image), "all", True)
    assert [r["model"] for r in verdicts["results"]][-1] == "tiny_net"
    gallery, report, _ = app.api_explain(str(face_image), "tiny_net", {"throwaway_grad": {"scale": 30},
                                                                       "gradcam": {}}, whole_image=True)
    assert list(report["methods"]) == ["gradcam", "throwaway_grad"]  # display order
    rec = report["methods"]["throwaway_grad"]
    assert rec["status"] == "ok" and rec["params"]["scale"] == 10  # clamped to the tunable's range
    assert report["explained_with"] == "tiny_net" and len(gallery) == 2

    assert bench(["--models", "tiny_net", "--runs", "1", "--random-weights", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "tiny_net" in out and "target<=999 ms" in out


def test_service_events_are_typed_and_grid_is_composed_once_per_new_map(app_server, face_image, monkeypatch):
    import analysis.service as service_mod
    from analysis import Done, MapReady, VerdictsReady

    _, app = app_server
    calls = []
    real = service_mod.compose_grid
    monkeypatch.setattr(service_mod, "compose_grid", lambda face, results: calls.append(len(results)) or real(
        face, results))
    svc = service_mod.AnalysisService(app.SETTINGS)  # its own, empty cache
    events = list(svc.explain(str(face_image), FAST_DETECTOR, ["gradcam", "saliency"], face_crop=False,
                              stream_grid=True))
    assert isinstance(events[0], VerdictsReady) and isinstance(events[-1], Done)
    maps = [e for e in events if isinstance(e, MapReady)]
    # saliency preview, saliency complete (same overlay: no new grid), gradcam
    assert [(e.result.method, e.result.pending, e.done) for e in maps] == [
        ("saliency", True, 0), ("saliency", False, 1), ("gradcam", False, 2)]
    assert calls == [1, 2]  # no redraw for the completed preview, none at the end
    assert events[-1].grid is maps[-1].grid and events[0].explained.target in (0, 1)
    assert events[-1].report["target"]["index"] == events[0].explained.target


def test_explain_takes_parameters_as_one_json_object(client, face_image):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, report, _ = client.predict(handle_file(str(face_image)), FAST_DETECTOR,
                                  {"shap": {"nsamples": SMALL["shap_samples"]}, "gradcam": {}}, api_name="/explain")
    assert list(report["methods"]) == ["shap", "gradcam"]
    assert report["methods"]["shap"]["params"]["nsamples"] == SMALL["shap_samples"]
    with pytest.raises(AppError, match="no parameter 'steps'"):
        client.predict(handle_file(str(face_image)), FAST_DETECTOR, {"integrated_gradients": {"steps": 3}},
                       api_name="/explain")
    with pytest.raises(AppError, match="Unknown explanation method"):
        client.predict(handle_file(str(face_image)), FAST_DETECTOR, {"occlusion": {}}, api_name="/explain")
