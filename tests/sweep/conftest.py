import pytest


@pytest.fixture
def sweep_env(runs, data_dir, monkeypatch):
    """Sweeps read data from the real folder and write into a private runs/."""
    monkeypatch.setenv("MTSEARCH_DATA", str(data_dir))
    return runs
