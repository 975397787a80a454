"""The operator's per-pipeline memory belongs to one object: re-created means forgotten."""

from __future__ import annotations

from cdc_operator.reconcile import STATE, state_for


def test_a_pipeline_recreated_under_the_same_name_starts_afresh() -> None:
    old = state_for("ns", "p", "uid-1")
    old.secret_version, old.creds = "41", {"KAFKA_PASSWORD": "x"}
    assert state_for("ns", "p", "uid-1") is old
    assert state_for("ns", "p") is old  # no uid at hand (a deletion): the same object
    new = state_for("ns", "p", "uid-2")
    assert new is not old
    assert (new.secret_version, new.creds, new.uid) == (None, None, "uid-2")
    STATE.pop(("ns", "p"))


def test_state_made_without_a_uid_adopts_the_first_one_seen() -> None:
    st = state_for("ns", "q")
    assert state_for("ns", "q", "uid-9") is st
    assert st.uid == "uid-9"
    STATE.pop(("ns", "q"))
