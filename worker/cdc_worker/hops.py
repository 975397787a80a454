"""Why a worker is not ready, as a reason code naming the hop: what the operator may show.

Readiness (`/readyz`) carries the full text (the driver's message, which can name the login
user); the pipeline's status must not, so the worker publishes only a code derived here, such as
`PostgresAuthFailed` or `KafkaTlsFailed`, and the operator explains it (issue #12: "every hop
with wrong credentials or an untrusted certificate fails with a clear condition naming the hop").
"""

from __future__ import annotations

_HOPS = (
    ("postgres", "Postgres"), ("load_offsets", "Postgres"), ("gaps_ensure", "Postgres"),
    ("kafka", "Kafka"), ("cassandra", "Cassandra"), ("redis", "Redis"),
)  # fmt: skip
_AUTH = ("authentication failed", "password", "sasl", "not authorized", "authorization failed",
         "access denied", "bad credentials")  # fmt: skip
# Not a bare "ssl": librdkafka names the broker `sasl_ssl://host:port/…` in every message.
_TLS = ("certificate", "handshake", "ssl error", "tls")

EXPLAIN = {
    "AuthFailed": "refused the workers' credentials",
    "TlsFailed": "TLS failed (certificate not trusted, or the hostname does not match)",
    "Unavailable": "is unreachable",
}


def reason_code(reason: str) -> str:
    """`<Hop><Kind>` for a readiness reason; `SchemaPending`/`DataGap`… pass through."""
    head, _, _ = reason.partition(":")
    head = head.strip()
    if head and head[0].isupper() and head.isidentifier():
        return head  # already a code: SchemaPending, CassandraUnavailable, DataGap
    low = reason.lower()
    hop = next((name for key, name in _HOPS if low.startswith(key)), None)
    if hop is None:
        return "NotReady"
    if any(w in low for w in _AUTH):
        return f"{hop}AuthFailed"
    if any(w in low for w in _TLS):
        return f"{hop}TlsFailed"
    return f"{hop}Unavailable"


def explain(code: str) -> str:
    for kind, text in EXPLAIN.items():
        if code.endswith(kind):
            return f"{code[: -len(kind)] or 'a dependency'} {text}"
    return code
