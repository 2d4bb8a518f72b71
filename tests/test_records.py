"""env.json's package list: every installed distribution, not a hand-picked few."""

from importlib import metadata

from mtsearch.records import package_versions


def test_package_versions_lists_every_installed_distribution():
    versions = package_versions()
    installed = {
        d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions() if d.metadata["Name"]
    }
    assert set(versions) == {n.replace(".", "-") for n in installed}
    # transitive dependencies are there too, at the version this interpreter imports
    for name in ("torch", "pydantic", "pydantic-core", "typing-extensions", "safetensors", "tokenizers"):
        assert versions[name] == metadata.version(name)
    assert list(versions) == sorted(versions)
    assert all(isinstance(v, str) and v for v in versions.values())
