"""registry/validation.py: resident IDs, credit codes and division codes, against DOMAIN.md."""

from __future__ import annotations

import datetime

import pytest

from registry.validation import (
    Division,
    FieldError,
    InvalidInput,
    ResidentId,
    ancestors,
    check_credit_code,
    check_division,
    check_person,
    check_resident_id,
    division,
    mask_id,
    mask_name,
    mask_numbers,
)
from trust.errors import ErrorCode, TongbanError

TODAY = datetime.date(2025, 6, 1)
FIELD = "applicant.id_number"

# GB 11643-1999 as DOMAIN.md states it, written out independently of stdnum's base-13 trick.
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def id_check(body: str) -> str:
    assert len(body) == 17
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


def make_id(body: str) -> str:
    return body + id_check(body)


def uscc_check(body: str) -> str:
    assert len(body) == 17
    total = sum(USCC_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(body))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def make_uscc(body: str) -> str:
    return body + uscc_check(body)


def refused(exc: pytest.ExceptionInfo[InvalidInput], field: str, reason_part: str) -> None:
    assert exc.value.code is ErrorCode.INVALID_BODY
    assert len(exc.value.errors) == 1
    err = exc.value.errors[0]
    assert err.field == field
    assert reason_part in err.reason
    assert str(exc.value).startswith(f"{field}: ")


# ---------------------------------------------------------------- resident ID


@pytest.mark.parametrize("number", ["11010519491231002X", "440524188001010014"])
def test_domain_examples_are_valid(number: str) -> None:
    assert id_check(number[:17]) == number[17]
    rid = check_resident_id(number, FIELD, today=TODAY)
    assert rid.number == number


def test_resident_id_fields() -> None:
    rid = check_resident_id("11010519491231002X", FIELD, today=TODAY)
    assert rid.birth_date == datetime.date(1949, 12, 31)
    assert rid.sex == "F"  # sequence 002: even
    assert rid.division.code == "110105"
    assert rid.division.name == "朝阳区"
    assert rid.division.province == "北京市"
    assert rid.division.current

    old = check_resident_id("440524188001010014", FIELD, today=TODAY)
    assert old.birth_date == datetime.date(1880, 1, 1)
    assert old.sex == "M"  # sequence 001: odd
    assert old.division.name == "潮阳县"
    assert not old.division.current


def test_lowercase_x_is_accepted_and_normalised() -> None:
    rid = check_resident_id("11010519491231002x", FIELD, today=TODAY)
    assert rid.number == "11010519491231002X"


def test_fullwidth_digits_become_ascii() -> None:
    # what a Chinese input method produces; stdnum's compact maps them to ASCII
    assert check_resident_id("１１０１０５１９４９１２３１００２X", FIELD, today=TODAY).number == (
        "11010519491231002X")


def test_surrounding_whitespace_is_ignored() -> None:
    assert check_resident_id(" 11010519491231002X\n", FIELD, today=TODAY).number == (
        "11010519491231002X")


@pytest.mark.parametrize("last", [c for c in "0123456789X" if c != "X"])
def test_every_wrong_check_character_is_refused(last: str) -> None:
    number = "11010519491231002" + last
    with pytest.raises(InvalidInput) as exc:
        check_resident_id(number, FIELD, today=TODAY)
    refused(exc, FIELD, "check character")
    assert number not in str(exc.value)


def test_wrong_check_digit_on_digit_example() -> None:
    with pytest.raises(InvalidInput) as exc:
        check_resident_id("440524188001010015", FIELD, today=TODAY)
    refused(exc, FIELD, "check character")


def test_x_where_a_digit_is_due() -> None:
    with pytest.raises(InvalidInput) as exc:
        check_resident_id("44052418800101001X", FIELD, today=TODAY)
    refused(exc, FIELD, "check character")


@pytest.mark.parametrize("number", [
    "", "1101051949123100", "11010519491231002", "11010519491231002XX", "110105194912310021",
    "110105491231002",  # first-generation 15-digit number: not GB 11643-1999
])
def test_wrong_lengths_are_refused(number: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_resident_id(number, FIELD, today=TODAY)
    refused(exc, FIELD, "18 characters" if len(number) != 18 else "check character")
    if number:
        assert number not in str(exc.value)


@pytest.mark.parametrize("number", [
    "1101051949123100AX",
    "X10105194912310021",
    "11010519491231002Y",
    "11010519491231-02X",
    "1101051949 231002X",
    # Unicode digits pass str.isdigit() and \d but are not digits of an ID number.
    "11010519491231٠٠2X",
    "11010519491231²02X",
    "11010519491231002Ｘ",
])
def test_non_digits_are_refused(number: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_resident_id(number, FIELD, today=TODAY)
    refused(exc, FIELD, "17 digits")
    assert number not in str(exc.value)


@pytest.mark.parametrize("value", [None, 11010519491231002, b"11010519491231002X", ["x"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_resident_id(value, FIELD, today=TODAY)
    refused(exc, FIELD, "string")


@pytest.mark.parametrize("birth", ["19490230", "19490229", "20230229", "19491301", "19490000",
                                   "19491232", "00000101"])
def test_impossible_dates_are_refused(birth: str) -> None:
    number = make_id("110105" + birth + "002")
    with pytest.raises(InvalidInput) as exc:
        check_resident_id(number, FIELD, today=TODAY)
    refused(exc, FIELD, "calendar date")
    assert number not in str(exc.value)


def test_leap_day_is_a_date() -> None:
    assert check_resident_id(make_id("11010520000229002"), FIELD, today=TODAY).birth_date == (
        datetime.date(2000, 2, 29))


def test_birth_in_the_future_is_refused() -> None:
    tomorrow = TODAY + datetime.timedelta(days=1)
    number = make_id("110105" + tomorrow.strftime("%Y%m%d") + "002")
    with pytest.raises(InvalidInput) as exc:
        check_resident_id(number, FIELD, today=TODAY)
    refused(exc, FIELD, "future")
    assert number not in str(exc.value)


def test_born_today_is_accepted() -> None:
    number = make_id("110105" + TODAY.strftime("%Y%m%d") + "002")
    assert check_resident_id(number, FIELD, today=TODAY).birth_date == TODAY


def test_birth_before_1880_is_refused() -> None:
    number = make_id("11010518791231002")
    with pytest.raises(InvalidInput) as exc:
        check_resident_id(number, FIELD, today=TODAY)
    refused(exc, FIELD, "not plausible")


@pytest.mark.parametrize("code", ["999999", "110199", "000000", "001234", "119900", "830001"])
def test_division_that_never_existed_is_refused(code: str) -> None:
    number = make_id(code + "19900101002")
    with pytest.raises(InvalidInput) as exc:
        check_resident_id(number, FIELD, today=TODAY)
    refused(exc, FIELD, "GB/T 2260")
    assert number not in str(exc.value)


@pytest.mark.parametrize(("code", "name", "years"), [
    ("110103", "崇文区", "-2010"),  # merged into 东城区 in 2010
    ("110104", "宣武区", "-2010"),  # merged into 西城区 in 2010
    ("130504", "郊区", "1983-1988"),  # 邢台市郊区
    ("440524", "潮阳县", "1983-1993"),
])
def test_historical_division_is_accepted(code: str, name: str, years: str) -> None:
    # Born 1980, ID issued with the code of the time; the code is gone today.
    rid = check_resident_id(make_id(code + "19800101002"), FIELD, today=TODAY)
    assert rid.division.name == name
    assert rid.division.years == years
    assert not rid.division.current


def test_code_newer_than_birth_is_accepted() -> None:
    # 440403 斗门区 exists since 2001; a Doumen resident born in 1990 holds it (module docstring).
    rid = check_resident_id(make_id("44040319900101002"), FIELD, today=TODAY)
    assert rid.division.name == "斗门区"


@pytest.mark.parametrize(("code", "province"), [
    ("810000", "香港特別行政區"), ("820000", "澳門特別行政區"), ("830000", "台湾省")])
def test_residence_permit_numbers_are_accepted(code: str, province: str) -> None:
    rid = check_resident_id(make_id(code + "19900101002"), FIELD, today=TODAY)
    assert rid.division.province == province


def test_830000_is_only_a_permit_code_not_a_division() -> None:
    assert division("830000") is None
    with pytest.raises(InvalidInput):
        check_division("830000", "place")
    with pytest.raises(InvalidInput):
        check_credit_code(make_uscc("91830000MA0000000"), "org")


def test_resident_id_repr_is_masked() -> None:
    rid = check_resident_id("11010519491231002X", FIELD, today=TODAY)
    assert "11010519491231002X" not in repr(rid)
    assert "19491231" not in repr(rid)
    assert rid.masked == "110105********002X"
    assert isinstance(rid, ResidentId)


# ---------------------------------------------------------------- mask_id


@pytest.mark.parametrize("number", [
    "", "1", "123456789", "1234567890", "12345678901", "123456789012345", "12345678901234567",
    "11010519491231002X", "11010519491231002X99", "abcdefghijklmnopqrstuvwxyz",
])
def test_mask_id_never_reveals_more_than_6_plus_4(number: str) -> None:
    masked = mask_id(number)
    assert len(masked) == len(number)
    shown = [i for i, c in enumerate(masked) if c != "*"]
    assert len(shown) <= 10
    assert all(i < 6 or i >= len(number) - 4 for i in shown)
    assert all(masked[i] == number[i] for i in shown)
    # at least eight characters stay hidden whenever anything is shown
    assert not shown or len(number) - len(shown) >= 8
    if len(number) >= 10:
        assert masked != number


def test_mask_id_of_a_full_number() -> None:
    assert mask_id("440524188001010014") == "440524********0014"


def test_mask_name() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳修文") == "欧***"
    assert mask_name("") == ""


# ---------------------------------------------------------------- unified social credit code

ORG = "org.credit_code"


def test_domain_credit_code_is_valid() -> None:
    assert uscc_check("91110000600037341") == "L"
    assert check_credit_code("91110000600037341L", ORG) == "91110000600037341L"


def test_credit_code_is_compacted_and_uppercased() -> None:
    assert check_credit_code(" 9111 0000-6000 3734 1l ", ORG) == "91110000600037341L"


@pytest.mark.parametrize("code", [
    "91320594780268314T",  # 苏州工业园区: a development zone, not a GB/T 2260 division
    make_uscc("N2440403MA0000001"),  # 农业: rural collective economic organisation
    make_uscc("A1110105MA0000001"),  # 中央军委改革和编制办公室
    make_uscc("Y1110105MA0000001"),  # 其他
    make_uscc("11100000000000001"),  # a central organ, registered at national level
    make_uscc("52110103MA0000001"),  # registered in 崇文区, a division gone since 2010
])
def test_real_world_credit_codes_are_accepted(code: str) -> None:
    assert check_credit_code(code, ORG) == code


def test_wrong_credit_check_character_is_refused() -> None:
    for last in USCC_ALPHABET:
        if last == "L":
            continue
        code = "91110000600037341" + last
        with pytest.raises(InvalidInput) as exc:
            check_credit_code(code, ORG)
        refused(exc, ORG, "check character")
        assert code not in str(exc.value)


@pytest.mark.parametrize("letter", ["I", "O", "Z", "S", "V"])
@pytest.mark.parametrize("position", [0, 1, 9, 16, 17])
def test_credit_code_with_forbidden_letter_is_refused(letter: str, position: int) -> None:
    body = list("91110000600037341L")
    body[position] = letter
    code = "".join(body)
    with pytest.raises(InvalidInput) as exc:
        check_credit_code(code, ORG)
    refused(exc, ORG, "alphabet")
    assert code not in str(exc.value)


def test_credit_code_with_letter_in_division_part_is_refused() -> None:
    code = make_uscc("9111A000600037341")
    with pytest.raises(InvalidInput) as exc:
        check_credit_code(code, ORG)
    refused(exc, ORG, "positions 3-8")


@pytest.mark.parametrize("division_part", ["999999", "990000", "119999", "000000", "449901"])
def test_credit_code_with_bogus_division_is_refused(division_part: str) -> None:
    code = make_uscc("91" + division_part + "600037341")
    with pytest.raises(InvalidInput) as exc:
        check_credit_code(code, ORG)
    refused(exc, ORG, "division part")
    assert code not in str(exc.value)


@pytest.mark.parametrize("code", ["", "91110000600037341", "91110000600037341LL", "9" * 30])
def test_credit_code_wrong_length(code: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_credit_code(code, ORG)
    refused(exc, ORG, "18 characters")


def test_credit_code_non_string() -> None:
    with pytest.raises(InvalidInput) as exc:
        check_credit_code(91110000600037341, ORG)
    refused(exc, ORG, "string")


def test_credit_code_unicode_digits() -> None:
    assert check_credit_code("９1110000600037341L", ORG) == "91110000600037341L"
    with pytest.raises(InvalidInput) as exc:
        check_credit_code("٩1110000600037341L", ORG)
    refused(exc, ORG, "alphabet")


# ---------------------------------------------------------------- divisions


def test_division_lookup() -> None:
    county, city, province = division("440403"), division("440400"), division("440000")
    assert county == Division("440403", "斗门区", "广东省", "2001-")
    assert county is not None
    assert city is not None
    assert province is not None
    assert (county.level, city.level, province.level) == ("county", "city", "province")
    assert city.name == "珠海市"
    # a code reused: 东郊区 until 1991, 东丽区 since 1992; the current name wins
    assert division("120110") == Division("120110", "东丽区", "天津市", "1992-")


@pytest.mark.parametrize("code", ["", "11010", "1101050", "11010a", "110105\n", "１１０１０５",
                                  "000000", "999999"])
def test_division_none_for_non_codes(code: str) -> None:
    assert division(code) is None


def test_check_division() -> None:
    assert check_division("110103", "place").name == "崇文区"
    for bad, reason in [("110105\n", "6-digit"), (110105, "6-digit"), ("999999", "not a GB/T")]:
        with pytest.raises(InvalidInput) as exc:
            check_division(bad, "case.place")
        refused(exc, "case.place", reason)


def test_ancestors() -> None:
    assert ancestors("440403") == ["440403", "440400", "440000"]
    assert ancestors("440400") == ["440400", "440000"]
    assert ancestors("440000") == ["440000"]
    assert ancestors("110105") == ["110105", "110100", "110000"]
    assert ancestors("320594") == ["320594", "320500", "320000"]
    assert ancestors("429004") == ["429004", "429000", "420000"]  # 仙桃市, directly under 湖北


@pytest.mark.parametrize("code", ["", "4404", "4404031", "44040x", "440403\n", "４４０４０３"])
def test_ancestors_refuses_non_codes(code: str) -> None:
    with pytest.raises(ValueError, match="6 ASCII digits"):
        ancestors(code)


# ---------------------------------------------------------------- InvalidInput and check_person


def test_invalid_input_shape() -> None:
    one = InvalidInput(FieldError("a", "bad"))
    assert one.errors == (FieldError("a", "bad"),)
    assert isinstance(one, TongbanError)
    assert one.code is ErrorCode.INVALID_BODY
    assert one.code.status == 422
    many = InvalidInput([FieldError("a", "bad"), FieldError("b", "worse")])
    assert many.errors == (FieldError("a", "bad"), FieldError("b", "worse"))
    assert str(many) == "a: bad; b: worse"
    assert many.detail == "a: bad; b: worse"
    from_tuple = InvalidInput((FieldError("a", "bad"),))
    assert from_tuple.errors == (FieldError("a", "bad"),)
    with pytest.raises(ValueError, match="at least one"):
        InvalidInput([])


def test_check_person() -> None:
    person = check_person({"name": " 阿依古丽·买买提 ", "id_number": "11010519491231002x"},
                          "applicant", today=TODAY)
    assert person.name == "阿依古丽·买买提"
    assert person.resident_id.number == "11010519491231002X"
    assert "买买提" not in repr(person)
    assert "11010519491231002X" not in repr(person)


def test_check_person_reports_every_problem() -> None:
    with pytest.raises(InvalidInput) as exc:
        check_person({"name": "  ", "id_number": "11010519491231002Y"}, "applicant", today=TODAY)
    fields = [e.field for e in exc.value.errors]
    assert fields == ["applicant.name", "applicant.id_number"]
    assert "11010519491231002Y" not in str(exc.value)


@pytest.mark.parametrize(("value", "field"), [
    ("11010519491231002X", "applicant"),
    ({"id_number": "11010519491231002X"}, "applicant.name"),
    ({"name": "张三"}, "applicant.id_number"),
    ({"name": "张\u0000三", "id_number": "11010519491231002X"}, "applicant.name"),
    ({"name": "张" * 65, "id_number": "11010519491231002X"}, "applicant.name"),
])
def test_check_person_refusals(value: object, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_person(value, "applicant", today=TODAY)
    assert [e.field for e in exc.value.errors] == [field]
    assert "11010519491231002X" not in str(exc.value)


@pytest.mark.parametrize(("text", "shown"), [
    ("身份证号11010119900307123X不符", "身份证号110101********123X不符"),
    ("zjhm=110101199003071234&x", "zjhm=110101********1234&x"),
    ("id110101199003071234", "id110101********1234"),
    ("电话 13812345678。", "电话 138****5678。"),
    # Not an ID or a mobile: longer digit runs, a landline, an order number.
    ("卡号 6222021234567890123", "卡号 6222021234567890123"),
    ("0756-5123456, 订单 21234567890123", "0756-5123456, 订单 21234567890123"),
])
def test_mask_numbers_in_free_text(text: str, shown: str) -> None:
    assert mask_numbers(text) == shown
