"""env.json: the package list (every installed distribution) and the git commit (read without locks)."""

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


def _git(repo, *args) -> str:
    import subprocess

    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def test_git_commit_takes_no_index_lock(tmp_path, monkeypatch):
    """git_commit must not rewrite the index: git writes it through .git/index.lock, which makes a
    user's git command fail at that moment. A tracked file whose mtime changed (same content) is
    what makes a plain `git status` refresh the index and write a new file over .git/index."""
    import os

    from mtsearch import records

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "f.txt").write_text("a\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-qm", "first")
    st = os.stat(repo / "f.txt")
    os.utime(repo / "f.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**12))  # stat-dirty, same content
    index = repo / ".git" / "index"
    before = os.stat(index)
    monkeypatch.setattr(records, "project_root", lambda: repo)

    commit = records.git_commit()

    head = _git(repo, "rev-parse", "HEAD")
    assert commit == head  # clean: the content did not change
    after = os.stat(index)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the index was rewritten"
    # and a lock some other git command holds does not stop it
    (repo / ".git" / "index.lock").write_text("")
    assert records.git_commit() == head
