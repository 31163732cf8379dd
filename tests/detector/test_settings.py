"""One Settings object: parsing, the Hub allow-list, re-reading on change, and the README table."""
from __future__ import annotations

from pathlib import Path

import pytest

from detector.settings import Settings, current, markdown_table

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_parsing():
    s = Settings.from_env({})
    assert (s.concurrency, s.queue_size, s.max_file_size, s.cache_entries) == (2, 64, "20mb", 256)
    assert s.cache_bytes == 256 * 1024 * 1024 and s.preload and s.malloc_arenas == 2 and s.hub_timeout == 5
    assert s.device is None and s.hub_org is None and s.max_pixels == 40_000_000
    s = Settings.from_env({"DEEPFAKE_PRELOAD": "0", "DEEPFAKE_CACHE_MB": "1.5", "DEEPFAKE_DEVICE": "cpu",
                           "DEEPFAKE_CHECKPOINTS": "/tmp/x"})
    assert not s.preload and s.cache_bytes == int(1.5 * 1024 * 1024) and s.device == "cpu"
    assert s.checkpoints == Path("/tmp/x")
    with pytest.raises(ValueError, match="DEEPFAKE_CONCURRENCY"):
        Settings.from_env({"DEEPFAKE_CONCURRENCY": "many"})


@pytest.mark.parametrize("raw, parsed", [(None, "auto"), ("auto", "auto"), ("1", "on"), ("on", "on"),
                                         ("0", "off"), ("false", "off"), ("maybe", ValueError)])
def test_explain_bf16_values(raw, parsed):
    env = {} if raw is None else {"DEEPFAKE_EXPLAIN_BF16": raw}
    if parsed is ValueError:
        with pytest.raises(ValueError, match="DEEPFAKE_EXPLAIN_BF16"):
            Settings.from_env(env)
    else:
        assert Settings.from_env(env).explain_bf16 == parsed


def test_hub_repos_per_detector_then_org():
    s = Settings.from_env({"DEEPFAKE_HUB_REPO_CUSTOM_CNN": "a/b", "DEEPFAKE_HUB_ORG": "acme"})
    assert s.hub_repo("custom_cnn") == "a/b" and s.hub_repo("densenet121") == "acme/densenet121"
    assert Settings.from_env({}).hub_repo("custom_cnn") is None


def test_current_follows_changed_variables(monkeypatch):
    monkeypatch.setenv("DEEPFAKE_QUEUE_SIZE", "7")
    first = current()
    assert first.queue_size == 7 and current() is first  # read once while nothing changes
    monkeypatch.setenv("DEEPFAKE_QUEUE_SIZE", "9")
    assert current().queue_size == 9


def test_readme_configuration_table_is_generated_from_settings():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's configuration table differs: paste `python -m detector.settings`"
