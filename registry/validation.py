"""Identity numbers and division codes: resident ID, unified social credit code, GB/T 2260.

The arithmetic and the division table come from `python-stdnum` (its `cn/loc` data holds current
and historical GB/T 2260 codes with their years). One rule differs on purpose: stdnum refuses an
ID number whose division code did not exist in the holder's birth year, but an ID is issued
years after birth with the code current then (a Doumen resident born in 1990 holds 440403…,
a code from 2001). We accept any code that GB/T 2260 has ever contained (DOMAIN.md).

Every pattern is ASCII-only and matched in full: `str.isdigit` and `\\d` accept superscript,
Arabic-Indic and other Unicode digits, and `$` accepts a trailing newline, so either would let a
number that no other system can match into a signed message. (stdnum's `compact` already turns
fullwidth digits, as typed with a Chinese input method, into ASCII ones; those are accepted.)

Errors carry the field path and a reason, never the full number: the number is personal data.
For the same reason the value objects' `repr` shows only masked forms, so logging one is safe.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from stdnum import numdb
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError as StdnumError

from trust.errors import ErrorCode, TongbanError

# Anchored with \A...\Z as well as used with fullmatch, so `.match` by other modules is safe too.
DIVISION_RE = re.compile(r"\A[0-9]{6}\Z")
RESIDENT_ID_RE = re.compile(r"\A[0-9]{17}[0-9X]\Z")
# GB 32100-2015: positions 1-2 (registration authority, category) and 9-18 use the 31-character
# alphabet without I, O, Z, S, V; positions 3-8 are a division code, digits only.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_RE = re.compile(r"\A[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}\Z")
EARLIEST_BIRTH = datetime.date(1880, 1, 1)
NAME_MAX = 64

# Residence permits for Hong Kong, Macao and Taiwan residents (港澳台居民居住证, 国办发〔2018〕81号)
# carry a GB 11643 number whose division part is 810000, 820000 or 830000. The first two are in
# GB/T 2260; 830000 is not (Taiwan is 710000 there), yet its holders use the same services.
_PERMIT_DIVISIONS = {
    "830000": ("台湾居民居住证", "台湾省", "2018-"),
}
# Credit codes issued by central registration authorities (e.g. 中央编办) carry 100000, the
# national level, which GB/T 2260 does not list as a code of its own.
_NATIONAL_DIVISION = "100000"


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class InvalidInput(TongbanError):
    """Input refused field by field; `errors` lists every problem found, not just the first.

    A clerk fixing a form wants every problem at once (一次性告知), not one per round trip.
    """

    code = ErrorCode.INVALID_BODY

    def __init__(self, errors: FieldError | Iterable[FieldError]) -> None:
        found = (errors,) if isinstance(errors, FieldError) else tuple(errors)
        if not found:
            raise ValueError("InvalidInput needs at least one FieldError")
        self.errors: tuple[FieldError, ...] = found
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in self.errors))


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    province: str
    years: str  # "" when current since before records, else e.g. "1988-" or "1983-1993"

    @property
    def current(self) -> bool:
        return not self.years or self.years.endswith("-")

    @property
    def level(self) -> str:
        if self.code.endswith("0000"):
            return "province"
        if self.code.endswith("00"):
            return "city"
        return "county"


@lru_cache(maxsize=8192)
def division(code: str) -> Division | None:
    """The GB/T 2260 division `code`, current or historical, or None if it never existed."""
    if not DIVISION_RE.fullmatch(code) or code.startswith("00"):
        return None
    info: dict[str, str] = {}
    for _part, props in numdb.get("cn/loc").info(code):
        info.update(props)
    if "county" not in info:
        return None
    # Several periods may share a code: prefer the current one, else the latest.
    periods = [p for p in info["county"].split(",") if p]
    chosen = periods[-1]
    for period in periods:
        if not period.startswith("[") or period.split("]")[0].endswith("-"):
            chosen = period
            break
    years, name = ("", chosen)
    if chosen.startswith("["):
        years, name = chosen[1:].split("]", 1)
    return Division(code=code, name=name, province=info.get("province", ""), years=years)


def ancestors(code: str) -> list[str]:
    """The code itself, then its city and province codes: county → city → province.

    Routing walks this chain to find the member responsible for a place, so a county served
    by its city's gateway still routes. Parents are derived from the code's structure, not
    looked up, so the chain also works for codes GB/T 2260 never listed (a development zone's
    320594 still reaches 苏州市 320500); a parent no member serves simply matches nothing.
    """
    if not DIVISION_RE.fullmatch(code):
        raise ValueError("a division code is 6 ASCII digits")
    chain = [code]
    city, province = code[:4] + "00", code[:2] + "0000"
    for parent in (city, province):
        if parent != chain[-1]:
            chain.append(parent)
    return chain


def check_division(value: object, field: str) -> Division:
    if not isinstance(value, str) or not DIVISION_RE.fullmatch(value):
        raise InvalidInput(FieldError(field, "must be a 6-digit GB/T 2260 division code"))
    found = division(value)
    if found is None:
        raise InvalidInput(FieldError(field, "not a GB/T 2260 division code"))
    return found


def mask_id(number: str) -> str:
    """What may appear in logs and views: the division code and the last four characters.

    Only a full-length number is partly shown; anything shorter (a typo, a truncated field) is
    starred out entirely, because showing 6 + 4 characters of a 10-14 character string would
    reveal most or all of it.
    """
    if len(number) < 18:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


_ID_IN_TEXT_RE = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
_MOBILE_IN_TEXT_RE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def mask_numbers(text: str) -> str:
    """Free text from outside (a local system's error message, which may echo the request)
    with every resident ID number and mobile number in it masked, so it may be logged,
    stored and shown in the console."""
    text = _ID_IN_TEXT_RE.sub(lambda m: mask_id(m.group()), text)
    return _MOBILE_IN_TEXT_RE.sub(lambda m: mask_phone(m.group()), text)


def mask_phone(number: str) -> str:
    """The first three and last four digits (138****5678), as carriers print them."""
    return number[:3] + "****" + number[-4:]


def mask_name(name: str) -> str:
    """The first character of a name and a star per further character (张**), as on receipts."""
    return name[:1] + "*" * (len(name) - 1)


@dataclass(frozen=True)
class ResidentId:
    number: str
    birth_date: datetime.date
    division: Division
    sex: str  # "M" or "F"

    @property
    def masked(self) -> str:
        return mask_id(self.number)

    def __repr__(self) -> str:
        return f"ResidentId({self.masked})"


def _id_division(code: str) -> Division | None:
    found = division(code)
    if found is None and code in _PERMIT_DIVISIONS:
        name, province, years = _PERMIT_DIVISIONS[code]
        found = Division(code=code, name=name, province=province, years=years)
    return found


def check_resident_id(value: object, field: str, *, today: datetime.date) -> ResidentId:
    """GB 11643-1999: 6-digit division, 8-digit birth date, 3-digit sequence, check character.

    A lowercase x is accepted and stored as X: people type it, and the standard's character
    is the uppercase one, so normalising keeps one spelling per person for lookups.
    `today` is injected so a birth date "in the future" is judged against the caller's clock.
    """
    if not isinstance(value, str):
        raise InvalidInput(FieldError(field, "must be a string of 18 characters"))
    number = ric.compact(value)
    if len(number) != 18:
        raise InvalidInput(FieldError(field, "must be 18 characters"))
    if not RESIDENT_ID_RE.fullmatch(number):
        raise InvalidInput(FieldError(field, "must be 17 digits followed by a digit or X"))
    if number[17] != ric.calc_check_digit(number):
        raise InvalidInput(FieldError(field, "check character does not match (GB 11643)"))
    try:
        born = ric.get_birth_date(number)
    except StdnumError:
        raise InvalidInput(FieldError(field, "birth date is not a calendar date")) from None
    if born > today:
        raise InvalidInput(FieldError(field, "birth date is in the future"))
    if born < EARLIEST_BIRTH:
        raise InvalidInput(FieldError(field, "birth date is not plausible"))
    place = _id_division(number[:6])
    if place is None:
        raise InvalidInput(FieldError(field, "division code is not in GB/T 2260"))
    return ResidentId(number=number, birth_date=born, division=place,
                      sex="M" if int(number[16]) % 2 else "F")


def _credit_division_known(code: str) -> bool:
    """Whether positions 3-8 of a credit code name a real registration place.

    Registration authorities of development zones that are not administrative divisions use
    codes GB/T 2260 never listed (苏州工业园区 registers as 320594, under 苏州市 320500). Such a
    code is accepted when its prefecture exists; a code under no real prefecture is refused.
    """
    if code == _NATIONAL_DIVISION or division(code) is not None:
        return True
    city = code[:4] + "00"
    return code[2:4] != "00" and division(city) is not None


def check_credit_code(value: object, field: str) -> str:
    """GB 32100-2015 unified social credit code: alphabet, division code, check character.

    stdnum's `uscc.validate` requires the first 8 characters to be digits, but the standard
    lets the registration-authority and category positions be letters (A 中央军委改革和编制办公室,
    N 农业 for rural collective economic organisations, Y 其他), so the format is checked here
    and only the check-character arithmetic is taken from stdnum.
    """
    if not isinstance(value, str):
        raise InvalidInput(FieldError(field, "must be a string of 18 characters"))
    code = uscc.compact(value)
    if len(code) != 18:
        raise InvalidInput(FieldError(field, "must be 18 characters"))
    if not all(c in USCC_ALPHABET for c in code):
        raise InvalidInput(FieldError(
            field, "characters outside the GB 32100 alphabet (digits and A-Z without I O Z S V)"))
    if not USCC_RE.fullmatch(code):
        raise InvalidInput(FieldError(field, "positions 3-8 must be a 6-digit division code"))
    if code[17] != uscc.calc_check_digit(code[:17]):
        raise InvalidInput(FieldError(field, "check character does not match (GB 32100)"))
    if not _credit_division_known(code[2:8]):
        raise InvalidInput(FieldError(field, "division part is not in GB/T 2260"))
    return code


@dataclass(frozen=True)
class Person:
    name: str
    resident_id: ResidentId

    def __repr__(self) -> str:
        return f"Person({mask_name(self.name)}, {self.resident_id.masked})"


def _check_name(value: object, field: str) -> tuple[str | None, FieldError | None]:
    if not isinstance(value, str):
        return None, FieldError(field, "must be a string")
    name = value.strip()
    if not name:
        return None, FieldError(field, "must not be empty")
    if len(name) > NAME_MAX:
        return None, FieldError(field, f"must be at most {NAME_MAX} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        return None, FieldError(field, "must not contain control or format characters")
    return name, None


def check_person(value: object, field: str, *, today: datetime.date) -> Person:
    """An applicant as `{"name": ..., "id_number": ...}`; reports the name and the ID together.

    Names keep their own spelling (middle dots of minority names, 阿依古丽·买买提); only blank,
    overlong and control characters are refused, since the population register, not we,
    decides what a name is (identity level L3).
    """
    if not isinstance(value, Mapping):
        raise InvalidInput(FieldError(field, "must be an object with name and id_number"))
    errors: list[FieldError] = []
    name, problem = _check_name(value.get("name"), f"{field}.name")
    if problem is not None:
        errors.append(problem)
    ident: ResidentId | None = None
    try:
        ident = check_resident_id(value.get("id_number"), f"{field}.id_number", today=today)
    except InvalidInput as exc:
        errors.extend(exc.errors)
    if name is None or ident is None:  # each None came with its FieldError
        raise InvalidInput(errors)
    return Person(name=name, resident_id=ident)
