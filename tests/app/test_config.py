"""The app's wiring: lazy import, hidden internal events, one job at a time per click."""
from __future__ import annotations

from .conftest import IMPORT_STATE


def test_import_loads_no_model(app_server):
    assert IMPORT_STATE["models_loaded_by_import"] == 0


def test_internal_events_are_private_and_runs_do_not_pile_up(app_server):
    _, app = app_server
    fns = list(app.demo.fns.values())
    public = sorted(f.api_name for f in fns if f.api_visibility == "public")
    assert public == ["analyze_video", "explain", "predict"]
    runs = [f for f in fns if f.name == "analyse"]
    assert runs, "the Analyse handler is wired"
    for f in runs:  # clicks while running collapse into one follow-up; the job is not callable from the API
        assert f.trigger_mode == "always_last" and f.api_visibility == "private"
    # Explanations run one at a time (hooks on a shared model copy); verdicts have their own group,
    # so /predict is not stuck behind a minute-long explanation.
    explain = [f for f in fns if f.concurrency_id == "explain"]
    assert {f.name for f in explain} >= {"analyse", "api_explain"}
    assert all(f.concurrency_limit == 1 for f in explain)
    (verdict,) = [f for f in fns if f.concurrency_id == "verdict"]
    assert verdict.name == "api_predict" and verdict.concurrency_limit == app.CONCURRENCY


def test_launch_settings(app_server):
    _, app = app_server
    kw = app.launch_kwargs()
    assert kw["max_file_size"] and kw["theme"] is not None and kw["css"]
    assert "server_name" not in kw and "server_port" not in kw  # GRADIO_SERVER_NAME/PORT decide
    assert app.demo._queue is not None


def test_examples_follow_file_names(app_server):
    from pathlib import Path

    from analysis.text import example_files, example_gallery, example_inputs, example_is_crop, example_label

    from .conftest import ROOT

    assert example_label(Path("dfdc_fake_aacwokkodz.jpg")) == "dfdc · true label: fake · aacwokkodz"
    assert example_label(Path("photo_astronaut_real.jpg")) == "photo · true label: real · astronaut"
    labels = [example_label(p) for p in example_files(ROOT / "examples")]
    assert len(set(labels)) == len(labels)  # unique captions
    assert example_is_crop(Path("gan140k_real_00025.jpg"))
    assert not example_is_crop(Path("photo_astronaut_real.jpg"))
    paths = [Path("dfdc_fake_aacwokkodz.jpg"), Path("photo_astronaut_real.jpg")]
    assert example_gallery(paths) == [("dfdc_fake_aacwokkodz.jpg", "dfdc · true label: fake · aacwokkodz"),
                                      ("photo_astronaut_real.jpg", "photo · true label: real · astronaut")]
    assert example_inputs(paths, 0) == ("dfdc_fake_aacwokkodz.jpg", True)
    assert example_inputs(paths, 1) == ("photo_astronaut_real.jpg", False)
