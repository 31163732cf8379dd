"""The app's user-facing Markdown (verdict table, map notes, weights status, About tab) and
its example images. Everything is generated from the registries: detector specs and
explainers."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from .service import display_name

__all__ = ["verdict_md", "method_md", "weights_overview", "about_md", "intro_md", "example_files",
           "example_label", "example_is_crop", "method_info", "DATASET_SOURCES"]

#: File-name prefixes of examples taken from the datasets: those images are already face crops and
#: the detectors were trained and evaluated on them whole, so they run in "whole image" mode.
DATASET_SOURCES = ("gan140k", "dfdc")

_NUMBERS = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five", 6: "Six", 7: "Seven", 8: "Eight", 9: "Nine"}


def _count(n: int) -> str:
    return _NUMBERS.get(n, str(n))


def method_info(name: str) -> dict[str, Any]:
    """Display name, meaning and defaults of a method; an ``error`` if it cannot even be built."""
    from explainers import get_explainer

    try:
        ex = get_explainer(name)
        return {"display_name": ex.display_name, "meaning": ex.meaning, "defaults": dict(ex.default_params)}
    except Exception as e:  # its tab shows why
        return {"display_name": name, "meaning": "", "defaults": {}, "error": f"{type(e).__name__}: {e}"}


def intro_md() -> str:
    """The page's first lines: how many detectors and methods there are, and the caveat."""
    from detector.specs import list_specs
    from explainers import METHOD_ORDER

    return ("# Deepfake face detector that explains itself\n"
            f"Upload a face photo. {_count(len(list_specs()))} detectors give a calibrated verdict; "
            f"{_count(len(METHOD_ORDER)).lower()} attribution methods show which pixels drove it. "
            "Evidence, not proof: see the **About** tab for the limits.")


def verdict_md(verdicts: Sequence[Any], unavailable: Mapping[str, str], explained: str | None) -> str:
    """The verdict table (one row per detector) with calibration and weights notes."""
    head = verdicts[0]
    title = (f"### Verdict: {head.label.upper()} according to {display_name(head.model)} "
             f"(p(fake) = {head.p_fake:.3f})" if len(verdicts) == 1 else f"### Verdicts of {len(verdicts)} detectors")
    rows = ["| Detector | Verdict | p(fake) | p(real) |", "|---|---|---|---|"]
    for p in verdicts:
        rows.append(f"| {display_name(p.model)} | **{p.label.upper()}** | {p.p_fake:.3f} | {p.p_real:.3f} |")
    for name in unavailable:
        rows.append(f"| {display_name(name)} | not available (no weights) | | |")
    notes = sorted({n for p in verdicts for n in p.notes})
    weights = "; ".join(f"{display_name(p.model)} `{p.weights}`" for p in verdicts)
    out = [title, "", *rows, "",
           "Probabilities are temperature-calibrated on validation data. A score is evidence, not proof. "
           f"Weights: {weights}."]
    if explained and len(verdicts) > 1:
        out.append(f"Maps below explain **{display_name(explained)}**.")
    if notes:
        out += ["", "**Notes:** " + " ".join(notes)]
    return "\n".join(out)


def method_md(res: Any, cached: bool) -> str:
    """A map's tab text: faithfulness, runtime, parameters, notes and meaning, or why it failed."""
    if res.error:
        return f"**{res.display_name} could not run.**\n\n{res.error}"
    a, f = res.attribution, res.faithfulness
    lines = []
    if getattr(res, "pending", False):
        lines.append("**Faithfulness score:** computing…")
    elif f and f.get("score") is not None:
        lines.append(f"**Faithfulness score:** {f['score']:+.3f} (insertion AUC − deletion AUC; higher = the map "
                     f"points at pixels the detector really relies on). {f.get('meaning', '')}")
    else:
        lines.append("**Faithfulness score:** not computed.")
    runtime = f"{a.runtime_s:.2f} s" if a is not None and a.runtime_s is not None else "?"
    params = ", ".join(f"{k}={v}" for k, v in (a.params or {}).items()) if a is not None else ""
    lines.append(f"**Runtime:** {runtime}{' (cached result)' if cached else ''}"
                 + (f" · **Parameters:** {params}" if params else ""))
    if a is not None and a.notes:
        lines.append("**Notes:** " + " ".join(a.notes))
    meaning = method_info(res.method).get("meaning")
    if meaning:
        lines.append(f"*What it shows:* {meaning}")
    return "\n\n".join(lines)


def weights_overview() -> str:
    """One line for the top of the page: which detectors cannot run yet (details in "About")."""
    from detector.specs import list_specs
    from detector.weights import hub_failures, hub_repo_for, weights_status

    specs, status, failed = list_specs(), weights_status(), hub_failures()
    lines = []
    local = [s for s in specs if hub_repo_for(s) in failed]
    if local:
        repos = ", ".join(f"`{hub_repo_for(s)}`" for s in local)
        lines.append(f"The Hub could not be used for {repos} ({failed[hub_repo_for(local[0])]}); those detectors "
                     "run on their local checkpoints.")
    missing = [s for s in specs if status.get(s.name) and not hub_repo_for(s)]
    if missing:
        names = ", ".join(f"**{s.display_name}**" for s in missing)
        rest = "The other detectors work." if len(missing) < len(specs) else "No detector can run yet."
        lines.append(f"Not available yet: {names} (no weights in `{missing[0].local_dir.parent.name}/`; "
                     f"see the About tab). {rest}")
    return "\n\n".join(lines)


_LIMITS = [
    "- Training data: StyleGAN-generated faces (gan140k) and DFDC face swaps, both for non-commercial research use "
    "only. Other generators (diffusion models, newer GANs), heavy compression, filters or unusual photos can fool "
    "the detectors, with high confidence.",
    "- No detector is proof. Use a verdict as one piece of evidence among others, never as the only basis for a "
    "decision about a person.",
    "- Maps show what influenced this model's score, not where an image was edited.",
    "- Faces are found with OpenCV's YuNet face detector; profile or very small faces may be missed (use "
    "'Analyse whole image' for images that are already a face crop).",
    "- Uploaded images are not stored beyond Gradio's temporary files, which are deleted after about an hour. "
    "Nothing is sent to third parties.",
]


def about_md(status: Mapping[str, str | None]) -> str:
    """The About tab: each detector's state and test metrics, each method's meaning, the limits."""
    from detector.metrics import read_test_metrics
    from detector.specs import list_specs
    from detector.weights import hub_repo_for
    from explainers import METHOD_ORDER

    parts = ["## Detectors", ""]
    for s in list_specs():
        table, source = read_test_metrics(s.local_dir)
        hub = hub_repo_for(s)
        state = ("weights available" if status.get(s.name) is None
                 else f"weights from the Hub repo `{hub}`" if hub else "**no weights yet**")
        parts += [f"### {s.display_name} ({state})", "",
                  f"{s.description} Input {s.input_size}×{s.input_size} px.", ""]
        if status.get(s.name) and not hub:
            parts += [f"Why: {status[s.name]}", ""]
        if table:
            parts += [f"Test metrics (from `{s.name}/{source}`; the test split's face crops, analysed whole):", "",
                      table, ""]
        else:
            parts += ["No test metrics published yet.", ""]
    parts += ["## Explanation methods", ""]
    for m in METHOD_ORDER:
        info = method_info(m)
        parts.append(f"- **{info['display_name']}**: {info.get('meaning') or info.get('error', '')}")
    parts += ["", "Each map comes with a faithfulness score from deletion/insertion curves: if a map is faithful to "
              "the model, removing the pixels it ranks highest lowers the score fast and inserting them first "
              "raises it fast (score = insertion AUC − deletion AUC).", "",
              "With **Compare all**, every detector with weights gives its verdict; maps are computed for one of "
              "them (Advanced → Explain with; by default the first available in the order shown above).", "",
              "## Limits", "", *_LIMITS, ""]
    return "\n".join(parts)


def example_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted; none if it does not exist)."""
    from detector.data import IMAGE_EXTS

    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _tokens(path: Path) -> list[str]:
    return [t for t in re.split(r"[_\-\s.]+", path.stem.lower()) if t]


def example_label(path: Path) -> str:
    """E.g. ``dfdc_fake_xxx.jpg`` -> "dfdc · true label: fake"."""
    tokens = _tokens(path)
    truth = "fake" if "fake" in tokens else "real" if "real" in tokens else "unknown"
    source = tokens[0] if tokens and tokens[0] not in ("fake", "real") else "photo"
    return f"{source} · true label: {truth}"


def example_is_crop(path: Path) -> bool:
    """Whether an example is already a face crop (dataset images): run it in whole-image mode."""
    tokens = _tokens(path)
    return bool(tokens) and (tokens[0] in DATASET_SOURCES or "crop" in tokens)
