"""Calendar periods written as ISO 8601 durations (ISO 8601-1:2019 §5.5.2.4), restricted to
the date part: ``PnYnMnWnD`` (e.g. ``P6Y``, ``P18M``, ``P30D``). Times of day (``T…``) are
refused on purpose: a retention period counted in hours is a mistake in a policy file.

Years and months are added on the calendar, clamping to the month's last day
(29 Feb + P1Y = 28 Feb), so that "six years from 2020-02-29" never falls short.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_PERIOD = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


@dataclass(frozen=True, slots=True)
class Period:
    """Not ordered on purpose: P1Y vs P365D depends on the start date; compare end dates."""

    years: int = 0
    months: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> Period:
        """Parse ``PnYnMnWnD``. Raises ValueError with a readable message."""
        m = _PERIOD.match(text.strip()) if isinstance(text, str) else None
        if m is None or text.strip() == "P":
            raise ValueError(
                f"{text!r} is not an ISO 8601 duration of the form PnYnMnWnD (e.g. P6Y, P30D)"
            )
        y, mo, w, d = (int(g) if g else 0 for g in m.groups())
        return cls(years=y, months=mo, days=w * 7 + d)

    def add_to(self, start: datetime) -> datetime:
        """``start`` + this period, on the calendar."""
        total_months = start.month - 1 + self.months + 12 * self.years
        year = start.year + total_months // 12
        month = total_months % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day) + timedelta(days=self.days)

    def iso(self) -> str:
        units = ((self.years, "Y"), (self.months, "M"), (self.days, "D"))
        parts = [f"{n}{u}" for n, u in units if n]
        return "P" + ("".join(parts) or "0D")

    def __str__(self) -> str:
        return self.iso()
