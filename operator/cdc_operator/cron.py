"""Cron schedules (5 fields, UTC) for `spec.verify.schedule`: parsing and the next run.

The syntax is the classic Vixie cron one that Kubernetes CronJobs accept:
`minute hour day-of-month month day-of-week`, each field a comma-separated list of `*`, `n`
or `a-b`, each optionally with `/step` (`n/step` means `n-max/step`); months may be `jan`..`dec`
and weekdays `sun`..`sat` (0 and 7 are both Sunday), case-insensitive; and the macros
`@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`.
As in Vixie cron, when both day fields are restricted (neither starts with `*`) a day matches
if *either* does (`0 0 1 * mon`: the 1st of the month and every Monday).

The same grammar is written once more as a regular expression plus a CEL rule
(`SCHEDULE_RULES`) so the API server rejects an invalid schedule with a message naming the
field, and the operator never meets one its model would refuse. No dependency: the next run is
found by walking days (at most a few years, for `29 2`) and then the hour and minute sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}  # fmt: skip

# (name, low, high, value regex, names) per field, in order.
_NUM = {
    "minute": r"[0-5]?[0-9]",
    "hour": r"[01]?[0-9]|2[0-3]",
    "day of month": r"0?[1-9]|[12][0-9]|3[01]",
    "month": r"0?[1-9]|1[0-2]|" + "|".join(MONTHS),
    "day of week": r"0?[0-7]|" + "|".join(DAYS),
}
_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
           ("month", 1, 12, MONTHS), ("day of week", 0, 7, DAYS))  # fmt: skip


def _field_re(value: str) -> str:
    item = rf"([*]|({value})(-({value}))?)(/[1-9][0-9]?)?"
    return rf"{item}(,{item})*"


SCHEDULE_RE = (
    "^(?i)(@(" + "|".join(m[1:] for m in MACROS) + ")|"
    + " +".join(f"({_field_re(v)})" for v in _NUM.values()) + ")$"
)  # fmt: skip
_COMPILED = re.compile(SCHEDULE_RE.replace("^(?i)", "^", 1), re.IGNORECASE)


def _cel_ranges_ordered() -> str:
    """CEL: every `a-b` has a <= b (names replaced by their numbers first)."""
    expr = "self.lowerAscii()"
    for i, m in enumerate(MONTHS):
        expr += f".replace('{m}', '{i + 1}')"
    for i, d in enumerate(DAYS):
        expr += f".replace('{d}', '{i}')"
    ranges = "findAll('[0-9]+-[0-9]+')"
    return f"{expr}.{ranges}.all(r, int(r.split('-')[0]) <= int(r.split('-')[1]))"


SCHEDULE_HELP = (
    "a cron schedule of 5 fields (minute hour day-of-month month day-of-week, UTC; "
    "e.g. '30 2 * * *'), each a list of *, n or a-b with an optional /step, or a macro "
    "such as @daily"
)
SCHEDULE_RULES = (
    (f"self.matches('{SCHEDULE_RE}')", f"schedule must be {SCHEDULE_HELP}"),
    (_cel_ranges_ordered(), "schedule has a range a-b whose start is after its end"),
)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]  # of month
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_or: bool  # both day fields restricted: a day matches if either does

    def day_matches(self, d: datetime) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        return (dom or dow) if self.day_or else (dom and dow)

    def matches(self, t: datetime) -> bool:
        t = t.astimezone(UTC)
        return self.day_matches(t) and t.hour in self.hours and t.minute in self.minutes

    def next_after(self, t: datetime) -> datetime | None:
        """The first matching minute strictly after `t` (UTC), or None within ~5 years."""
        t = t.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        day = t.replace(hour=0, minute=0)
        for _ in range(366 * 5 + 2):
            if self.day_matches(day):
                for h in hours:
                    for m in minutes:
                        if (cand := day.replace(hour=h, minute=m)) >= t:
                            return cand
            day += timedelta(days=1)
        return None


def _value(text: str, names: tuple[str, ...], low: int, what: str) -> int:
    t = text.lower()
    if t in names:
        return names.index(t) + (1 if low == 1 else 0)
    if not t.isdigit():
        raise ValueError(f"{what}: {text!r} is not a number")
    return int(t)


def _parse_field(text: str, what: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    out: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step_text and (not step_text.isdigit() or step < 1):
            raise ValueError(f"{what}: bad step in {item!r}")
        if base == "*":
            a, b = low, high
        elif "-" in base:
            x, _, y = base.partition("-")
            a, b = _value(x, names, low, what), _value(y, names, low, what)
        else:
            a = _value(base, names, low, what)
            b = high if step_text else a
        if not (low <= a <= high and low <= b <= high):
            raise ValueError(f"{what}: {item!r} is outside {low}-{high}")
        if a > b:
            raise ValueError(f"{what}: the range {item!r} starts after its end")
        out.update(range(a, b + 1, step))
    return out


def parse(text: str) -> Cron:
    """A schedule, or ValueError saying what is wrong (the field, where it can tell)."""
    expr = MACROS.get(text.lower(), text)
    parts = expr.split(" ")
    parts = [p for p in parts if p]
    if len(parts) != 5:
        raise ValueError(f"{text!r}: expected 5 fields; the schedule must be {SCHEDULE_HELP}")
    sets = [_parse_field(p, what, lo, hi, names)
            for p, (what, lo, hi, names) in zip(parts, _FIELDS, strict=True)]  # fmt: skip
    if not _COMPILED.fullmatch(text):
        raise ValueError(f"{text!r}: the schedule must be {SCHEDULE_HELP}")
    weekdays = {0 if d == 7 else d for d in sets[4]}
    day_or = not parts[2].startswith("*") and not parts[4].startswith("*")
    m, h, dom, mon = (frozenset(x) for x in sets[:4])
    return Cron(m, h, dom, mon, frozenset(weekdays), day_or)
