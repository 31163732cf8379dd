"""The app's user-facing Markdown (verdict table, map notes, weights status, About tab) and
its example images. Everything is generated from the registries: detector specs and
explainers."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from .service import display_name

__all__ = ["verdict_md", "detector_choices", "default_note", "method_md", "weights_overview", "about_md", "intro_md", "example_files",
           "example_label", "example_is_crop", "example_gallery", "example_inputs", "method_info", "DATASET_SOURCES"]

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


def detector_choices(specs: Sequence[Any]) -> list[tuple[str, str]]:
    """(label, name) per detector, in the given order; a weak detector's label carries its tag."""
    from detector.reliability import reliability

    out = []
    for s in specs:
        tag = reliability(s.name).tag
        out.append((f"{s.display_name} ({tag})" if tag else s.display_name, s.name))
    return out


def default_note(choice: Any) -> str:
    """Under the detector choice: why the preselected detector is preselected when every detector is weak."""
    if not choice.all_weak:
        return ""
    return f"*Preselected {display_name(choice.name)}: {choice.reason.replace(choice.name, display_name(choice.name))}.*"


_WORD = {"fake": "**FAKE**", "real": "**REAL**", "inconclusive": "inconclusive"}


def _title(t: Any, name: str) -> str:
    """The single-detector headline: capitals only for a decided verdict (``detector.verdict_bands.headline``)."""
    return f"### {t.headline} · {name}"


def verdict_md(v: Any, explained: str | None) -> str:
    """The verdict block of :class:`analysis.events.Verdicts` ``v``: headline (or consensus), one row per
    detector with its three-way verdict and reliability in plain words, warnings and notes."""
    preds, trusts = v.predictions, v.trust
    if len(preds) == 1 and v.consensus is None:
        title = _title(trusts[preds[0].model], display_name(preds[0].model))
    elif v.consensus is not None and v.consensus.p_fake is not None:
        c = v.consensus
        names = ", ".join(display_name(n) for n in c.detectors)
        title = (f"### Combined verdict: {_WORD[c.verdict]} (p(fake) = {c.p_fake:.2f}) · consensus of {names}")
    else:
        title = f"### Verdicts of {len(preds)} detectors"
    rows = ["| Detector | Verdict | p(fake) | How reliable (held-out test images) |", "|---|---|---|---|"]
    for p in preds:
        t = trusts[p.model]
        tag = f" **{t.reliability.tag}**" if t.reliability.tag else ""
        rows.append(f"| {display_name(p.model)} | {_WORD[t.verdict]} | {p.p_fake:.3f} | {t.reliability.sentence}{tag} |")
    for name, why in v.unavailable.items():
        rows.append(f"| {display_name(name)} | not available (no weights) | | |")
    out = [title, ""]
    if v.consensus is not None:
        c = v.consensus
        if c.p_fake is None:
            out += [c.note, ""]
        elif c.reliability is not None:
            tag = f" **{c.reliability.tag}**" if c.reliability.tag else ""
            out += [f"The combined verdict weighs each detector's calibrated score as fitted on validation images. "
                    f"{c.reliability.sentence.replace('this detector', 'the combination')}{tag}", ""]
    out += [*rows, ""]
    warnings: dict[str, list[str]] = {}
    for p in preds:
        for w in trusts[p.model].warnings:
            warnings.setdefault(w, []).append(display_name(p.model))
    for w, who in warnings.items():
        whom = "" if len(who) == len(preds) else f" ({', '.join(who)})"
        out.append(f"**Warning{whom}:** {w[0].upper() + w[1:]}")
    if warnings:
        out.append("")
    from detector.verdict_bands import PRECISION_TARGET

    out.append("Probabilities are temperature-calibrated on validation data; *inconclusive* means the score lies "
               f"where the detector's calls were less than {PRECISION_TARGET:.0%} right on validation images. "
               "A score is evidence, not proof.")
    if explained and len(preds) > 1:
        out.append(f"Maps below explain **{display_name(explained)}**.")
    notes = sorted({n for p in preds for n in p.notes})
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
    elif f and f.get("reading_text"):
        lines.append(f"**Faithfulness score: {f['reading']}.** {f['reading_text']} {f.get('meaning', '')}")
    elif f and f.get("score") is not None:
        lines.append(f"**Faithfulness score:** {f['score']:+.3f} (range -1 to 1, insertion AUC − deletion AUC; "
                     f"higher = the map points at pixels the detector really relies on). {f.get('meaning', '')}")
    else:
        lines.append("**Faithfulness score:** not computed.")
    runtime = f"{a.runtime_s:.2f} s" if a is not None and a.runtime_s is not None else "?"
    params = ", ".join(f"{k}={v}" for k, v in (a.params or {}).items()) if a is not None else ""
    lines.append(f"**Runtime:** {runtime}{' (cached result)' if cached else ''}"
                 + (f" · **Parameters:** {params}" if params else ""))
    for check in method_checks(a):
        lines.append(check)
    if a is not None and a.notes:
        lines.append("**Details:** " + " ".join(a.notes))
    meaning = method_info(res.method).get("meaning")
    if meaning:
        lines.append(f"*What it shows:* {meaning}")
    return "\n\n".join(lines)


#: Integrated Gradients' completeness check passes when the attributions add up to f(x) - f(baseline) within this.
IG_COMPLETENESS_TOLERANCE = 0.05


def method_checks(a: Any) -> list[str]:
    """A map's self-checks as passed/failed lines: IG completeness, LRP conservation (from ``Attribution.extra``)."""
    extra = getattr(a, "extra", None) or {}
    out = []
    ce = extra.get("completeness_error")
    if isinstance(ce, (int, float)):
        ok = ce <= IG_COMPLETENESS_TOLERANCE
        out.append(f"**Check {'passed' if ok else 'failed'}:** the attributions add up to the change in the "
                   f"detector's score from the baseline image to this one "
                   f"{'within' if ok else 'only within'} {ce:.1%} (tolerance {IG_COMPLETENESS_TOLERANCE:.0%})"
                   + ("." if ok else "; more steps (Advanced) make them add up better."))
    if isinstance(extra.get("approximate"), bool):
        out.append("**Check passed:** relevance is conserved layer by layer for this detector (exact LRP)."
                   if not extra["approximate"] else
                   "**Check failed:** LRP is only an approximation for this detector (see the details): read the "
                   "map as where relevance survived, not as exact contributions.")
    return out


def expected_time_md(svc: Any, detector: str, explain_with: str | None, methods: Sequence[str]) -> str:
    """Under the Analyse button: how long the selected maps took for this detector on this server's last run."""
    from .service import ALL, AUTO

    if not methods:
        return "*No maps selected: only the verdict will be computed (about a second).*"
    name = detector
    if detector == ALL:
        from .trust import available_default

        name = explain_with if explain_with and explain_with != AUTO else available_default().name
    seconds, missing = svc.expected_seconds(name, list(methods))
    who = display_name(name)
    if len(missing) == len(methods):
        return (f"*Expected time for {who}: not measured on this server yet (the first run measures it; the cheap "
                "gradient maps come first, SHAP and LIME take longest).*")
    rest = (f"; not measured yet: {', '.join(method_info(m)['display_name'] for m in missing)}" if missing else "")
    return (f"*Expected time for {who}: about {seconds:.0f} s for the selected maps (their last run on this server, "
            f"when not served from the cache{rest}).*")


def done_status(report: Mapping[str, Any], seconds: float) -> str:
    """The status line once an analysis is complete: time, maps from the cache, methods that could not run."""
    recs = list(report["methods"].values())
    failed = [v["display_name"] for v in recs if v["status"] == "error"]
    n_cached = sum(1 for v in recs if v["cached"])
    return (f"Done in {seconds:.1f} s" + (f" ({n_cached} of {len(recs)} maps from the cache)" if n_cached else "")
            + "." + (f" Could not run: {', '.join(failed)} (see their tabs)." if failed else ""))


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
    from detector import weights
    from detector.metrics import read_test_metrics
    from detector.reliability import reliability
    from detector.specs import get_spec
    from detector.weights import hub_repo_for
    from explainers import METHOD_ORDER

    from .trust import detector_order

    loaded = {lm.spec.name: lm.source for lm in list(weights._cache.values())}
    parts = ["## Detectors (most reliable first)", ""]
    for s in [get_spec(n) for n in detector_order()]:
        table, source = read_test_metrics(s.local_dir)
        hub = hub_repo_for(s)
        state = ("weights available" if status.get(s.name) is None
                 else f"weights from the Hub repo `{hub}`" if hub else "**no weights yet**")
        rel = reliability(s.name)
        parts += [f"### {s.display_name} ({state})", "",
                  f"{s.description} Input {s.input_size}×{s.input_size} px. {rel.sentence}"
                  + (f" **{rel.tag}**" if rel.tag else ""), ""]
        if s.name in loaded:
            parts += [f"Weights in use: `{loaded[s.name]}` (`local:` a checkpoint folder on this server, `hub:` a "
                      "Hugging Face Hub repository).", ""]
        if status.get(s.name) and not hub:
            parts += [f"Why: {status[s.name]}", ""]
        if table:
            parts += [f"Test metrics (from `{s.name}/{source}`; the test split's face crops, analysed whole):", "",
                      table, ""]
        else:
            parts += ["No test metrics published yet.", ""]
    parts += consensus_about()
    parts += ["## Explanation methods", ""]
    for m in METHOD_ORDER:
        info = method_info(m)
        parts.append(f"- **{info['display_name']}**: {info.get('meaning') or info.get('error', '')}")
    parts += ["", "Each map comes with a faithfulness score from deletion/insertion curves: if a map is faithful to "
              "the model, removing the pixels it ranks highest lowers the score fast and inserting them first "
              "raises it fast (score = insertion AUC − deletion AUC, from -1 to 1). The same score for a random map "
              "on the same image is computed alongside: a map is *good* if it beats it clearly, *fair* if it beats "
              "it a little, *poor* otherwise. The curves use the same calibrated probability as the verdict.", "",
              "With **Compare all**, every detector with weights gives its verdict and a combined verdict is shown; "
              "maps are computed for one of them (Advanced → Explain with; by default the most reliable).", "",
              "## Limits", "", *_LIMITS, ""]
    return "\n".join(parts)


def consensus_about() -> list[str]:
    """The About tab's "Combined verdict" section, from ``consensus.json`` (or why there is none)."""
    from detector.consensus import ConsensusError, consensus_reliability, load

    try:
        m = load()
    except ConsensusError as e:
        return ["## Combined verdict (Compare all)", "", f"Not available: {e}.", ""]
    rel = consensus_reliability(m)
    terms = " + ".join(f"{c:.2f} × logit({display_name(n)})" for n, c in zip(m.detectors, m.coef))
    return ["## Combined verdict (Compare all)", "",
            f"A logistic regression over the calibrated scores of {', '.join(display_name(n) for n in m.detectors)}, "
            f"fitted on validation images: p(fake) = sigmoid({m.intercept:.2f} + {terms}), with its own "
            f"inconclusive range {m.band.lo:.2f}-{m.band.hi:.2f}. "
            + rel.sentence.replace("this detector", "the combination")
            + f" Test ROC AUC: {', '.join(f'{k} {v:.3f}' for k, v in sorted(rel.test_auc.items()))}"
            + (f", pooled {rel.pooled_auc:.3f}" if rel.pooled_auc is not None else "") + "."
            + (f" **{rel.tag}**" if rel.tag else ""), ""]


def example_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted; none if it does not exist)."""
    from detector.data import IMAGE_EXTS

    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _tokens(path: Path) -> list[str]:
    return [t for t in re.split(r"[_\-\s.]+", path.stem.lower()) if t]


def example_label(path: Path) -> str:
    """E.g. ``dfdc_fake_aacwokkodz.jpg`` -> "dfdc · true label: fake · aacwokkodz" (the id keeps captions unique)."""
    tokens = _tokens(path)
    truth = "fake" if "fake" in tokens else "real" if "real" in tokens else "unknown"
    source = tokens[0] if tokens and tokens[0] not in ("fake", "real") else "photo"
    rest = [t for t in tokens[1:] if t not in ("fake", "real")]
    ident = f" · {rest[-1] if len(rest[-1]) <= 10 else rest[-1][:8]}" if rest else ""  # unique: the file's id
    return f"{source} · true label: {truth}{ident}"


def example_is_crop(path: Path) -> bool:
    """Whether an example is already a face crop (dataset images): run it in whole-image mode."""
    tokens = _tokens(path)
    return bool(tokens) and (tokens[0] in DATASET_SOURCES or "crop" in tokens)


def example_gallery(paths: Sequence[Path]) -> list[tuple[str, str]]:
    """The examples gallery's items: (image file, unique caption) per example, in order."""
    return [(str(p), example_label(p)) for p in paths]


def example_inputs(paths: Sequence[Path], index: int) -> tuple[str, bool]:
    """What clicking example ``index`` loads: (image file, "Analyse whole image" on for dataset crops)."""
    return str(paths[index]), example_is_crop(paths[index])


def crop_labels(v: Any) -> tuple[str, str]:
    """Titles of the two crop panels: "Face crop" only when a face was cropped."""
    if v.face_crop:
        return "Face crop (before CLAHE)", "After CLAHE (what the model sees)"
    if v.facts is not None and v.facts.face_found is False:
        return ("Whole image, no face detected (before CLAHE)",
                "After CLAHE: no face detected, the score is not meaningful")
    return "Whole image, central square (before CLAHE)", "After CLAHE (what the model sees)"


#: Under the two crop panels: what CLAHE does, in one line.
CLAHE_LINE = ("*CLAHE (contrast-limited adaptive histogram equalisation) evens out contrast region by region, so "
              "lighting differs less between photos; the detectors were trained on images treated the same way.*")

#: The status line after Stop.
STOPPED = "**Stopped.** The analysis was stopped; maps already shown are complete. Press Analyse to run it again."
