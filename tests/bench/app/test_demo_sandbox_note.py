"""The demo's one-line note where bubblewrap is missing (its own examples then run unsandboxed)."""

from heptathlon.bench.app.demo import unsandboxed_examples_note
from heptathlon.runners import sandbox as S


def test_the_note_appears_only_without_bubblewrap(monkeypatch):
    monkeypatch.setenv(S.SANDBOX_ENV, "none")
    note = unsandboxed_examples_note()
    assert note is not None and "\n" not in note
    assert "apt-get install bubblewrap" in note and "unsandboxed" in note
    monkeypatch.setenv(S.SANDBOX_ENV, "bwrap")
    expected_none = S._probe_cached("bwrap") is None
    assert (unsandboxed_examples_note() is None) == expected_none
