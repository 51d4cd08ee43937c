"""``pii_plans.may_be_valid`` skips a region only where ``valid_in`` is False there, so ``valid_in_any`` is exactly the
plain ``any(valid_in(candidate, r) for r in regions)`` it replaces: checked region by region (the stronger claim) on
generated national numbers (every length of 7 to 12 digits; separators; leading 0, 00, 1 and +; each region's country
code, national prefix and international prefix as leading digits), on random strings of digits and separators
(hypothesis), and on every candidate the detector tries in the stress texts and latency cases."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute.core import pii, pii_numbers, pii_plans
from tests.unit import test_pii_stress

pytestmark = pytest.mark.unit

REGIONS = tuple(dict.fromkeys(pii_numbers._REGIONS + pii_numbers._TRUNK_REGIONS))
GROUPINGS = [(3, 3, 4), (4, 4), (2, 2, 2, 2, 2), (3, 4), (4, 3, 3), (2, 4, 4), (5, 6), (3, 3, 3), (1, 3, 3, 3)]
SEPARATORS = ["", " ", "-", ".", "/", "  "]


def plain(candidate: str, regions: tuple[str, ...]) -> bool:
    return any(pii_numbers.valid_in(candidate, r) for r in regions)


def check(candidate: str) -> None:
    """Region by region: where the shortcut says no, parsing says no; and the ``any`` over each tuple agrees."""
    found = pii_plans.digits(candidate)
    if found is not None:
        for region in REGIONS:
            if not pii_plans.may_be_valid(found, region):
                assert not pii_numbers.valid_in(candidate, region), (candidate, region)
    for regions in (pii_numbers._REGIONS, pii_numbers._TRUNK_REGIONS):
        assert pii_numbers.valid_in_any(candidate, regions) == plain(candidate, regions), (candidate, regions)


def leading_digits() -> list[str]:
    """What a number may start with that changes how ``parse`` reads it in one of the regions."""
    heads = {"", "0", "00", "1", "01", "011", "8", "810", "90", "000"}
    for region in REGIONS:
        md = phonenumbers.PhoneMetadata.metadata_for_region(region)
        heads.add(str(md.country_code))
        heads.add("0" + str(md.country_code))
        if md.national_prefix:
            heads.add(md.national_prefix)
        for prefix in (md.international_prefix, md.preferred_international_prefix):
            if prefix and prefix.isdigit():
                heads.add(prefix)
                heads.add(prefix + "44")
    return sorted(heads)


def grouped(digits: str, rng: random.Random) -> str:
    sizes = rng.choice([g for g in GROUPINGS if sum(g) <= len(digits)] or [(len(digits),)])
    parts, at = [], 0
    for size in sizes:
        parts.append(digits[at : at + size])
        at += size
    parts[-1] += digits[at:]
    sep = rng.choice(SEPARATORS)
    text = sep.join(parts)
    if rng.random() < 0.2 and len(parts) > 1:
        text = f"({parts[0]}) " + sep.join(parts[1:])
    return text


def generated() -> Iterator[str]:
    rng = random.Random(20261205)
    for head in leading_digits():
        for length in range(7, 13):
            for _ in range(4):
                body = "".join(rng.choice("0123456789") for _ in range(max(1, length - len(head))))
                number = (head + body)[: max(length, len(head) + 1)]
                yield grouped(number, rng)
                yield "+" + number
    for region in ("US", "GB", "DE", "FR", "IN", "BR", "JP", "AU", "AR", "RU", "KR", "CO", "CN", "FI"):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
            digits = phonenumbers.national_significant_number(example)
            yield national
            yield digits
            for i in range(len(digits)):  # one digit changed, dropped or doubled
                yield digits[:i] + str((int(digits[i]) + 1) % 10) + digits[i + 1 :]
                yield digits[:i] + digits[i + 1 :]
                yield digits[: i + 1] + digits[i:]


def test_the_shortcut_agrees_with_parsing_on_generated_numbers() -> None:
    count = 0
    for candidate in generated():
        check(candidate)
        count += 1
    assert count > 2000


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789 -.()/", min_size=7, max_size=18))
def test_the_shortcut_agrees_with_parsing_on_random_strings(candidate: str) -> None:
    check(candidate)


def calls_on_the_stress_texts(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[tuple[Any, ...]]:
    """The arguments of every call of ``module.name`` while the stress texts are detected, each distinct once."""
    seen: list[tuple[Any, ...]] = []
    fast = getattr(module, name)

    def recording(*args: Any) -> Any:
        seen.append(args)
        return fast(*args)

    monkeypatch.setattr(module, name, recording)
    for texts in test_pii_stress.random_groups().values():
        for text, key in texts:
            pii.detect(text, key)
    for text in test_pii_stress.phone_edges():
        pii.detect(text)
    monkeypatch.undo()
    return list(dict.fromkeys(seen))


def test_the_shortcut_agrees_with_parsing_on_every_candidate_of_the_stress_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    candidates = dict.fromkeys(c for c, _ in calls_on_the_stress_texts(monkeypatch, pii_numbers, "valid_in_any"))
    assert len(candidates) > 100
    for candidate in candidates:
        check(candidate)


def test_the_shortcut_skips_most_regions_for_a_number_none_accepts() -> None:
    found = pii_plans.digits("7 920 625")
    assert found == "7920625"
    assert not plain("7 920 625", pii_numbers._REGIONS)
    assert sum(pii_plans.may_be_valid(found, r) for r in pii_numbers._REGIONS) <= 8


def test_digits_refuses_what_the_shortcut_does_not_model() -> None:
    for candidate in ("+44 20 7946 0958", "1-800-FLOWERS", "415 555 0134 ext 7", "415 555 0134#", "٤١٥٥٥٥٠١٣٤", "- ."):
        assert pii_plans.digits(candidate) is None


def parsed_numbers() -> Iterator[phonenumbers.PhoneNumber]:
    """Example numbers of every type of every region and of the non-geographic codes, each also with one digit
    changed, dropped or doubled, and random national numbers of 4 to 14 digits under every country code."""
    rng = random.Random(20261206)
    examples: list[phonenumbers.PhoneNumber] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                examples.append(example)
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(cc)
        if example is not None:
            examples.append(example)
    for example in examples:
        yield example
        nsn = phonenumbers.national_significant_number(example)
        for i in range(len(nsn)):
            for variant in (
                nsn[:i] + str((int(nsn[i]) + 1) % 10) + nsn[i + 1 :],
                nsn[:i] + nsn[i + 1 :],
                nsn[: i + 1] + nsn[i:],
            ):
                yield phonenumbers.parse(f"+{example.country_code}{variant}", None)
    for cc in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for length in range(4, 15):
            for _ in range(3):
                digits = "".join(rng.choice("0123456789") for _ in range(length))
                with contextlib.suppress(phonenumbers.NumberParseException):
                    yield phonenumbers.parse(f"+{cc} {digits}", None)


def test_is_valid_number_agrees_with_phonenumbers() -> None:
    count = valid = 0
    for number in parsed_numbers():
        expected = phonenumbers.is_valid_number(number)
        assert pii_plans.is_valid_number(number) == expected, phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.E164
        )
        count, valid = count + 1, valid + expected
    assert count > 20000 and valid > 2000


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    st.text(alphabet="0123456789", min_size=2, max_size=15),
)
def test_is_valid_number_agrees_with_phonenumbers_on_random_numbers(cc: int, digits: str) -> None:
    try:
        number = phonenumbers.parse(f"+{cc}{digits}", None)
    except phonenumbers.NumberParseException:
        return
    assert pii_plans.is_valid_number(number) == phonenumbers.is_valid_number(number)


def library(candidate: str, region: str | None) -> bool:
    """What ``valid_in`` was before ``pii_plans.valid_in``: ``phonenumbers`` itself."""
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(candidate, region)))
    except phonenumbers.NumberParseException:
        return False


def check_parse(candidate: str, region: str | None) -> bool:
    """``pii_plans.valid_in`` says what ``phonenumbers`` says, where it answers; True where it did."""
    found = pii_plans.valid_in(candidate, region)
    if found is None:
        return False
    assert found == library(candidate, region), (candidate, region)
    return True


def formatted_examples() -> Iterator[tuple[str, str | None]]:
    """Every region's example numbers of every type written nationally (with that region and three of ours) and
    internationally (with none), each also with one digit changed, dropped or doubled."""
    rng = random.Random(20261207)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            written = [
                (phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL), False),
                (phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL), True),
                (phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164), True),
            ]
            for text, international in written:
                variants = [text]
                at = [i for i, ch in enumerate(text) if ch.isdigit()]
                for i in rng.sample(at, min(3, len(at))):
                    variants += (
                        text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :],
                        text[:i] + text[i + 1 :],
                        text[: i + 1] + text[i:],
                    )
                for variant in variants:
                    if international:
                        yield variant, None
                        yield variant[1:], region  # (the plus dropped: the country code as leading digits)
                    else:
                        for r in (region, *rng.sample(REGIONS, 3)):
                            yield variant, r


def test_parsing_agrees_with_phonenumbers_on_example_numbers() -> None:
    answered = sum(check_parse(candidate, region) for candidate, region in formatted_examples())
    assert answered > 15000


def test_parsing_agrees_with_phonenumbers_on_generated_numbers() -> None:
    answered = 0
    for candidate in generated():
        if candidate.startswith("+"):
            answered += check_parse(candidate, None)
        else:
            answered += sum(check_parse(candidate, r) for r in REGIONS)
    assert answered > 20000


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["", "+", "+1", "+44", "00", "0", "1", "7", "8", "810", "011"]),
    st.text(alphabet="0123456789 -.()/", min_size=0, max_size=18),
    st.sampled_from([None, *REGIONS]),
)
def test_parsing_agrees_with_phonenumbers_on_random_strings(head: str, rest: str, region: str | None) -> None:
    check_parse(head + rest, region)
    check_parse(head + rest, None)


def test_parsing_agrees_with_phonenumbers_on_every_number_the_stress_texts_validate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = calls_on_the_stress_texts(monkeypatch, pii_plans, "valid_in")
    answered = sum(check_parse(candidate, region) for candidate, region in calls)
    assert answered > 300


def test_numbers_shorter_than_a_plan_allows_are_valid_nowhere_in_it() -> None:
    """``may_be_valid``'s first test: fewer digits than ``_Plan.shortest`` (every national number parse may make of
    them too short for the regions sharing the code), whatever they start with."""
    rng = random.Random(20261208)
    heads = leading_digits()
    for region in REGIONS:
        shortest = pii_plans._plan(region).shortest
        assert shortest >= 4, region  # (every rule of these regions is of the form ``_grows`` models)
        for length in range(2, shortest):
            for head in heads:
                if len(head) >= length:
                    continue
                digits = head + "".join(rng.choice("0123456789") for _ in range(length - len(head)))
                for written in (digits, grouped(digits, rng)):
                    assert not pii_numbers.valid_in(written, region) or pii_plans.may_be_valid(digits, region)
                    assert not library(written, region) or pii_plans.may_be_valid(digits, region), (written, region)


def test_viable_is_phonenumbers_viability_on_every_short_string_valid_in_reads() -> None:
    """Every string of up to five characters of digits and `` -.()/`` (with and without a leading ``+``): ``viable``
    answers what ``phonenumbers``' ``_is_viable_phone_number`` (a regex) answers."""
    import itertools

    from phonenumbers import phonenumberutil

    alphabet = "01 -.()/"
    for n in range(6):
        for chars in itertools.product(alphabet, repeat=n):
            for national in ("".join(chars), "+" + "".join(chars), "++" + "".join(chars)):
                digits = national.translate(pii_plans._SEPARATORS).lstrip("+")
                assert pii_plans.viable(national, digits) is phonenumberutil._is_viable_phone_number(national), national
