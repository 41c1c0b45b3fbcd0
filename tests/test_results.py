import json

import pytest

from aebook.book import results


def test_record_merges_keys_and_modes(tmp_path, monkeypatch):
    monkeypatch.delenv("AEBOOK_QUICK", raising=False)
    results.record("4.3", "denoise_psnr", 30.5, unit="dB", directory=tmp_path)
    results.record("4.3", "bm3d_psnr", 31.0, unit="dB", directory=tmp_path)
    results.record("10.1", "x", 1, directory=tmp_path)
    results.record("5.1", "speedup", 2, directory=tmp_path)
    data = results.load_results(tmp_path)
    assert list(data) == ["4.3", "5.1", "10.1"]  # numeric chapter order
    assert data["4.3"]["results"]["denoise_psnr"]["value"] == 30.5
    assert not data["4.3"]["quick"]
    monkeypatch.setenv("AEBOOK_QUICK", "1")
    results.record("4.3", "denoise_psnr", 20.0, directory=tmp_path)  # the other mode replaces the file
    data = results.load_results(tmp_path)
    assert data["4.3"]["quick"] and list(data["4.3"]["results"]) == ["denoise_psnr"]
    rows = results.summary_rows(tmp_path)
    assert {r["key"] for r in rows} == {"denoise_psnr", "x", "speedup"}


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        results.record("4.3", "k", float("nan"), directory=tmp_path)
    with pytest.raises(ValueError, match="bad key"):
        results.record("4.3", "a/b", 1.0, directory=tmp_path)
    (tmp_path / "9.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a results file"):
        results.load_results(tmp_path)


def test_env_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("AEBOOK_RESULTS", str(tmp_path / "r"))
    results.record("6", "k", 1.0)
    assert json.loads((tmp_path / "r" / "6.json").read_text())["results"]["k"]["value"] == 1.0


def test_compare(tmp_path, monkeypatch):
    monkeypatch.delenv("AEBOOK_QUICK", raising=False)
    results.record("4.3", "ae", 30.0, unit="dB", higher_is_better=True, directory=tmp_path)
    results.record("4.3", "bm3d", 30.5, unit="dB", higher_is_better=True, directory=tmp_path)
    results.record("5.1", "seconds", 2.0, unit="s", higher_is_better=False, directory=tmp_path)
    results.record("5.1", "base_seconds", 3.0, unit="s", directory=tmp_path)
    data = results.load_results(tmp_path)
    c = results.compare(data, "4.3", "ae", "bm3d")
    assert c["difference"] == -0.5 and not c["a_better"] and c["unit"] == "dB"
    assert results.compare(data, "5.1", "seconds", "base_seconds")["a_better"]  # lower is better here
    assert results.compare(data, "4.3", "ae", 29.97)["a_better"]  # against a fixed reference
    with pytest.raises(KeyError, match="run those chapters first"):
        results.compare(data, "4.2", "ae", "biharmonic")
    with pytest.raises(ValueError, match="higher is better"):
        results.compare(data, "5.1", "base_seconds", "seconds")


def test_live_frontend(monkeypatch):
    from aebook.runtime import live_frontend

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not live_frontend()  # batch execution (nbval, the book build): no widgets
    monkeypatch.setenv("JPY_SESSION_NAME", "/tmp/x.ipynb")
    assert live_frontend()


def test_explore_draws_the_static_figure_and_a_slider_only_where_a_person_drives(monkeypatch):
    import sys
    import types

    from aebook import plots

    calls, sliders = [], []
    fake = types.SimpleNamespace(IntSlider=lambda **kw: kw, interact=lambda f, **kw: sliders.append(kw))
    monkeypatch.setitem(sys.modules, "ipywidgets", fake)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    plots.explore(calls.append, "sigma", 25, 5, 75, step=5)
    assert calls == [25] and sliders == []  # batch execution: the static figure only
    monkeypatch.setenv("JPY_SESSION_NAME", "/tmp/x.ipynb")
    plots.explore(calls.append, "sigma", 25, 5, 75, step=5, description="σ")
    assert calls == [25, 25]
    assert sliders == [{"sigma": {"value": 25, "min": 5, "max": 75, "step": 5, "description": "σ"}}]
    with pytest.raises(ValueError, match="slider 'q'"):
        plots.explore(calls.append, "q", 9, 1, 8)
