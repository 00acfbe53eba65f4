"""What a study's stored facts mean for recognition today.

The store keeps facts: the verdict (machine's, or a standing human decision), the window end
(study date + window), the institution as written. Whether the study is eligible depends on when
it is asked (the window ends) and on the institution's qualification in the register, which an
administrator or the next evaluation changes without any re-scoring. So eligibility is computed
when results are read, on the site clock (``thresholds/site.yaml`` time zone), by
:meth:`EligibilityPolicy.judge`; every output (results JSON/CSV/table, the review app) reads
results through it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from qc_pipeline.errors import ConfigError
from qc_pipeline.institutions import Register, default_register
from qc_pipeline.rules.loader import ITEMS_DIR, SITE_FILE, default_thresholds_dir, format_validation_error, read_yaml
from qc_pipeline.rules.schema import SiteConfig
from qc_pipeline.rules.verdict import Eligibility, EligibilityReason, eligibility_on

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EligibilityPolicy:
    """The day, the register and the recognition marks eligibility is judged with."""

    as_of: dt.date
    """Today on the site clock, unless asked about another day."""
    register: Register
    marks: Mapping[str, str]
    """Recognition mark by item code (from the item lists' ``mark``)."""

    @classmethod
    def current(
        cls,
        *,
        as_of: dt.date | None = None,
        register: Register | None = None,
        thresholds_dir: Path | None = None,
        now: dt.datetime | None = None,
    ) -> EligibilityPolicy:
        """The policy of ``thresholds_dir`` (default: the site's thresholds) on ``as_of``
        (default: today in the site's time zone, from ``now`` or the clock)."""
        directory = Path(thresholds_dir) if thresholds_dir is not None else default_thresholds_dir()
        site = _site(directory / SITE_FILE, _mtime(directory / SITE_FILE))
        if as_of is None:
            as_of = (now or _clock()).astimezone(site.tzinfo()).date()
        lists = tuple(directory / ITEMS_DIR / name for name in site.catalog_lists)
        marks = _marks(lists, tuple(_mtime(p) for p in lists))
        return cls(as_of=as_of, register=register if register is not None else default_register(), marks=marks)

    def judge(
        self,
        *,
        eligible: bool,
        until: dt.date | None,
        final_verdict: str,
        institution: str | None,
        study_date: dt.date | None,
        item_code: str | None,
    ) -> Eligibility:
        """Eligibility on :attr:`as_of` of a study with these stored facts (see ``eligibility_on``)."""
        check = self.register.qualification_check(institution, study_date)
        return eligibility_on(
            self.as_of,
            eligible=eligible,
            until=until,
            final_verdict=final_verdict,
            qualification=None if check.qualified else EligibilityReason(check.code, check.message, check.message_zh),
            mark=None if item_code is None else self.marks.get(item_code),
        )


def _clock() -> dt.datetime:
    """The wall clock (a seam for tests that read results on another day)."""
    return dt.datetime.now(dt.UTC)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


@functools.lru_cache(maxsize=8)
def _site(path: Path, _mtime_ns: int) -> SiteConfig:
    data = read_yaml(path)
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, data)) from None


@functools.lru_cache(maxsize=8)
def _marks(paths: tuple[Path, ...], _mtimes: tuple[int, ...]) -> Mapping[str, str]:
    """Item code -> mark of its list, for the lists that declare one."""
    out: dict[str, str] = {}
    for path in paths:
        data = read_yaml(path)
        if not isinstance(data, dict):
            continue
        mark = (data.get("list") or {}).get("mark")
        if mark:
            out.update(
                {
                    item["code"]: str(mark)
                    for item in data.get("items") or ()
                    if isinstance(item, dict) and "code" in item
                }
            )
    return out
