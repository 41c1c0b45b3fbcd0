import json

import pytest

from aebook import results


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
