"""CQL → PostgreSQL type mapping and value conversion, on the values the connector really sends."""

from __future__ import annotations

import pytest

from cdc_worker.typemap import converter, parse_cql_type, pg_type, to_pg_text

# Values as captured from debezium-connector-cassandra-5 3.4.1 (decimal/varint in string mode).
CASES = [
    ("text", "text \u00fc", "text", "text \u00fc"),
    ("ascii", "ascii", "text", "ascii"),
    ("varchar", "varchar", "text", "varchar"),
    ("tinyint", 1, "smallint", "1"),
    ("smallint", 2, "smallint", "2"),
    ("int", 3, "integer", "3"),
    ("bigint", 9223372036854775807, "bigint", "9223372036854775807"),
    ("varint", "123456789012345678901234567890", "numeric", "123456789012345678901234567890"),
    ("decimal", "12345678901234567890.123456789", "numeric", "12345678901234567890.123456789"),
    ("decimal", "-0.000001", "numeric", "-0.000001"),
    ("float", 1.5, "real", "1.5"),
    ("double", 2.25, "double precision", "2.25"),
    ("boolean", True, "boolean", "true"),
    (
        "uuid",
        "11111111-2222-3333-4444-555555555555",
        "uuid",
        "11111111-2222-3333-4444-555555555555",
    ),
    (
        "timeuuid",
        "50554d6e-29bb-11e5-b345-feff819cdc9f",
        "uuid",
        "50554d6e-29bb-11e5-b345-feff819cdc9f",
    ),
    ("timestamp", 1709210096789, "timestamptz", "2024-02-29T12:34:56.789000+00:00"),
    ("date", 19782, "date", "2024-02-29"),
    ("time", 45296123456789, "time", "12:34:56.123456"),
    ("duration", 2775845006007008, "interval", "2775845006007 microseconds"),
    ("inet", "/192.168.0.1", "inet", "192.168.0.1"),
    ("inet", "/0:0:0:0:0:0:0:1", "inet", "::1"),
    ("blob", "yv66vg==", "bytea", "\\xcafebabe"),
    ("list<int>", [1, 2, 3], "integer[]", '{"1","2","3"}'),
    ("set<text>", ["a", 'b"q'], "text[]", '{"a","b\\"q"}'),
    ("frozen<list<int>>", [9, 8], "integer[]", '{"9","8"}'),
    ("map<text, int>", {"x": 1, "y": 2}, "jsonb", '{"x":1,"y":2}'),
    ("tuple<int, text>", {"field1": 7, "field2": "seven"}, "jsonb", '[7,"seven"]'),
    ("frozen<addr>", {"street": "Main", "zip": 12345}, "jsonb", '{"street":"Main","zip":12345}'),
    ("list<frozen<list<int>>>", [[1], [2, 3]], "jsonb", "[[1],[2,3]]"),
    ("vector<float, 3>", [0.5, 1.0, 2.0], "real[]", '{"0.5","1.0","2.0"}'),
]


@pytest.mark.parametrize(("cql", "value", "pg", "text"), CASES)
def test_type_and_value(cql: str, value: object, pg: str, text: str) -> None:
    t = parse_cql_type(cql)
    assert pg_type(t) == pg
    assert to_pg_text(t, value) == text
    assert converter(t)(value) == text  # the decoder's fast path agrees with the general one


@pytest.mark.parametrize(
    ("cql", "value", "why"),
    [
        ("int", 2**31, "out of range"),
        ("tinyint", -129, "out of range"),
        ("int", "abc", "invalid literal"),
        ("int", True, "boolean"),
        ("text", 5, "expected a string"),
        ("text", "nul\x00", "NUL"),
        ("uuid", "not-a-uuid", "uuid"),
        ("decimal", "NaN", "numeric"),
        ("blob", "***", "base64"),
        ("time", 86_400 * 10**9, "time of day"),
    ],
)
def test_unconvertible_values_raise_value_error_naming_the_type(
    cql: str, value: object, why: str
) -> None:
    t = parse_cql_type(cql)
    with pytest.raises(ValueError, match=cql.split("<")[0]) as err:
        converter(t)(value)
    assert why.lower() in str(err.value).lower() or "cannot convert" in str(err.value)


def test_parse_cql_type_shapes() -> None:
    t = parse_cql_type("map<text, frozen<list<int>>>")
    assert (t.name, t.args[0].name, t.args[1].name, t.args[1].frozen) == (
        "map",
        "text",
        "list",
        True,
    )
    assert str(parse_cql_type("vector<float, 3>")) == "vector<float, 3>"
    with pytest.raises(ValueError, match="invalid CQL type"):
        parse_cql_type("map<text")
    with pytest.raises(ValueError, match="invalid CQL type"):
        parse_cql_type("")


def test_double_special_values() -> None:
    conv = converter(parse_cql_type("double"))
    assert conv(float("nan")) == "NaN"
    assert conv(float("inf")) == "Infinity"
    assert conv(1) == "1.0"
