"""Cron schedules of spec.verify.schedule: parsing, the next run, and agreement with the CRD."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cdc_operator import cron
from cdc_operator.crdgen import crds
from cdc_operator.models import VerifySpec


def at(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("30 2 * * *", at(2027, 1, 15, 8, 0), at(2027, 1, 16, 2, 30)),
        ("30 2 * * *", at(2027, 1, 15, 2, 29, 59), at(2027, 1, 15, 2, 30)),
        # Strictly after: the same minute is not the next run.
        ("30 2 * * *", at(2027, 1, 15, 2, 30), at(2027, 1, 16, 2, 30)),
        ("*/15 * * * *", at(2027, 1, 15, 8, 1), at(2027, 1, 15, 8, 15)),
        ("*/15 * * * *", at(2027, 1, 15, 23, 50), at(2027, 1, 16, 0, 0)),
        ("0 0 1 1 *", at(2027, 6, 1), at(2028, 1, 1)),
        ("0 12 * * mon-fri", at(2027, 1, 15, 13, 0), at(2027, 1, 18, 12, 0)),  # Fri -> Mon
        ("0 12 * * 7", at(2027, 1, 15), at(2027, 1, 17, 12, 0)),  # 7 is Sunday
        ("0 0 29 2 *", at(2027, 1, 1), at(2028, 2, 29)),
        ("0 0 31 * *", at(2027, 4, 1), at(2027, 5, 31)),  # April has no 31st
        # Both day fields restricted: either matches (the 1st, or a Monday).
        ("0 0 1 * mon", at(2027, 1, 1), at(2027, 1, 4)),
        ("0 0 1 * mon", at(2027, 1, 25, 1), at(2027, 2, 1)),
        # Day of month restricted by a step starting with *: both must match.
        ("0 0 */10 * mon", at(2027, 1, 1), at(2027, 1, 11)),  # the 11th is a Monday
        ("5,10-12/2 3 * jan-feb,dec *", at(2027, 2, 28, 3, 12), at(2027, 12, 1, 3, 5)),
        ("7/20 * * * *", at(2027, 1, 1, 0, 8), at(2027, 1, 1, 0, 27)),
        ("@hourly", at(2027, 1, 1, 0, 0, 30), at(2027, 1, 1, 1, 0)),
        ("@Daily", at(2027, 1, 1, 0, 0), at(2027, 1, 2)),
        ("@weekly", at(2027, 1, 15), at(2027, 1, 17)),
        ("@monthly", at(2027, 1, 15), at(2027, 2, 1)),
        ("@yearly", at(2027, 1, 15), at(2028, 1, 1)),
    ],
)
def test_next_run(expr: str, after: datetime, expected: datetime) -> None:
    assert cron.parse(expr).next_after(after) == expected


def test_next_run_of_a_date_that_never_comes() -> None:
    assert cron.parse("0 0 30 2 *").next_after(at(2027, 1, 1)) is None


def test_next_run_is_the_first_match_by_brute_force() -> None:
    c = cron.parse("17,47 */5 * * 1-5")
    t = at(2027, 3, 10, 21, 3)
    expected = t.replace(second=0) + timedelta(minutes=1)
    while not c.matches(expected):
        expected += timedelta(minutes=1)
    assert c.next_after(t) == expected


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day of week"),
        ("5-1 * * * *", "starts after its end"),
        ("* * * * fri-mon", "starts after its end"),
        ("*/0 * * * *", "bad step"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("@reboot", "expected 5 fields"),
        ("1,,2 * * * *", "not a number"),
        ("* * * mon *", "not a number"),
        ("*/100 * * * *", "must be a cron schedule"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(expr: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        cron.parse(expr)


def test_verify_spec_validates_the_schedule_and_takes_interval_or_schedule() -> None:
    assert VerifySpec.model_validate({"schedule": "0 3 * * *"}).schedule == "0 3 * * *"
    assert VerifySpec.model_validate({}).every == "24h"
    with pytest.raises(ValidationError, match="hour"):
        VerifySpec.model_validate({"schedule": "0 25 * * *"})
    with pytest.raises(ValidationError, match="not both"):
        VerifySpec.model_validate({"schedule": "0 3 * * *", "interval": "1h"})


def _crd_schedule() -> dict[str, object]:
    spec = crds()["tablereplications"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    verify = spec["properties"]["spec"]["properties"]["verify"]
    assert verify["x-kubernetes-validations"] == [
        {"rule": "!has(self.interval) || !has(self.schedule)",
         "message": "use interval or schedule, not both"}]  # fmt: skip
    assert "default" not in verify["properties"]["interval"]  # a default would trip the rule
    return verify["properties"]["schedule"]  # type: ignore[no-any-return]


def _crd_rules() -> tuple[re.Pattern[str], list[tuple[str, str]]]:
    """The CRD's two CEL rules on schedule, as Python can evaluate them."""
    rules = [v["rule"] for v in _crd_schedule()["x-kubernetes-validations"]]  # type: ignore[attr-defined]
    m = re.fullmatch(r"self\.matches\('\^\(\?i\)(.*)\$'\)", rules[0])
    assert m is not None
    names = re.findall(r"\.replace\('([a-z]+)', '([0-9]+)'\)", rules[1])
    assert len(names) == 19
    assert rules[1].endswith(
        ".findAll('[0-9]+-[0-9]+').all(r, int(r.split('-')[0]) <= int(r.split('-')[1]))"
    )
    return re.compile(m.group(1), re.IGNORECASE), names


RULES = _crd_rules()


def _crd_accepts(text: str) -> bool:
    """The CRD's rules, evaluated the way the API server does (RE2 and re agree here)."""
    pattern, names = RULES
    if not pattern.fullmatch(text):
        return False
    lowered = text.lower()
    for name, num in names:
        lowered = lowered.replace(name, num)
    return all(int(a) <= int(b) for a, b in re.findall("([0-9]+)-([0-9]+)", lowered))


def _model_accepts(text: str) -> bool:
    try:
        cron.parse(text)
    except ValueError:
        return False
    return True


# Per field: values in range (mostly) and at its edges, names, and a few that are wrong.
_POOLS = [
    ["0", "5", "30", "59", "07", "0", "5", "30", "59", "60"],
    ["0", "3", "23", "12", "0", "3", "23", "12", "24"],
    ["1", "15", "31", "1", "15", "31", "0", "32"],
    ["1", "6", "12", "jan", "Dec", "1", "6", "12", "jan", "Dec", "13", "mon"],
    ["0", "1", "5", "7", "sun", "FRI", "sat", "0", "1", "5", "7", "sun", "FRI", "8", "jan"],
]
_BAD = ["x", "", "-1", "100"]


def _item(pool: list[str]) -> st.SearchStrategy[str]:
    value = st.sampled_from(pool * 6 + _BAD)
    base = st.one_of(st.just("*"), value, st.tuples(value, value).map("-".join))
    step = st.sampled_from([""] * 12 + ["/2", "/15", "/0", "/100"])
    return st.tuples(base, step).map("".join)


def _field(pool: list[str]) -> st.SearchStrategy[str]:
    return st.lists(_item(pool), min_size=1, max_size=2).map(",".join)


_SCHEDULE = st.one_of(
    st.tuples(*(_field(p) for p in _POOLS)).map(" ".join),
    st.tuples(*(_field(p) for p in _POOLS)).map(" ".join),
    st.tuples(*(_field(p) for p in _POOLS[:4])).map(" ".join),
    st.sampled_from(["@daily", "@hourly", "@reboot", "@Weekly"]),
)


@settings(max_examples=300, deadline=None)
@given(_SCHEDULE)
def test_the_crd_accepts_exactly_what_the_model_accepts(text: str) -> None:
    # The operator validates what it reads with the model: anything the API server lets
    # through must parse, or the table would be unreadable.
    assert _crd_accepts(text) == _model_accepts(text), text


@pytest.mark.parametrize(
    "text", ["30 2 * * *", "0 0 1 jan-mar sun", "0-59/10 22-23 * * MON-FRI", "@midnight",
             "5-1 * * * *", "60 * * * *", "* * * * fri-mon", "0 0 1 * * *"],
)  # fmt: skip
def test_the_crd_and_the_model_agree_on_examples(text: str) -> None:
    assert _crd_accepts(text) == _model_accepts(text)
