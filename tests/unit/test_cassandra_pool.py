"""The operator's Cassandra session pool: reuse, eviction on failure and idleness, no shutdown
while in use. The cluster is a recording stand-in: what is tested is the pool's bookkeeping."""

from __future__ import annotations

import threading

import pytest

from cdc_operator.appliers.cassandra_pool import SessionPool


class Cluster:
    made = 0

    def __init__(self) -> None:
        Cluster.made += 1
        self.down = False
        self.sessions = 0

    def connect(self) -> object:
        self.sessions += 1
        return self

    def shutdown(self) -> None:
        self.down = True


def test_one_session_per_key_reused_and_the_password_kept_only_as_a_digest() -> None:
    pool = SessionPool()
    k1 = pool.key(("h:1",), "dc1", "u", password="s3cret")
    assert "s3cret" not in repr(k1)
    assert k1 != pool.key(("h:1",), "dc1", "u", password="other")
    with pool.session(k1, Cluster) as a:
        pass
    with pool.session(k1, Cluster) as b:
        assert b is a
        assert not a.down
    assert len(pool) == 1


def test_a_failure_closes_the_session_but_only_after_its_last_user() -> None:
    pool = SessionPool()
    k = pool.key("k")
    with pool.session(k, Cluster) as held:

        def fail() -> None:
            with pool.session(k, Cluster) as same:
                assert same is held
                raise RuntimeError("timeout")

        with pytest.raises(RuntimeError):
            fail()
        assert not held.down, "shut down under another user"
        assert len(pool) == 0, "a broken session is not handed out again"
        with pool.session(k, Cluster) as fresh:
            assert fresh is not held
    assert held.down
    assert not fresh.down


def test_idle_sessions_are_closed_and_close_shuts_everything() -> None:
    pool = SessionPool(idle_seconds=0.0)
    with pool.session(pool.key("a"), Cluster) as a:
        pass
    with pool.session(pool.key("b"), Cluster) as b:
        pass
    assert a.down, "idle past the limit when another key was used"
    assert not b.down, "just used"
    pool.close()
    assert b.down
    assert len(pool) == 0


def test_threads_racing_for_a_new_key_share_one_session() -> None:
    pool = SessionPool()
    seen: list[object] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        with pool.session(pool.key("k"), Cluster) as s:
            seen.append(s)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = {id(s) for s in seen if not s.down}  # type: ignore[attr-defined]
    assert len(kept) == 1
    assert len(pool) == 1
