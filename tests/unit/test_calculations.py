"""Unit tests for calculations.py: DOMAIN.md's worked examples and edge cases."""

from decimal import Decimal

import pytest

from calculations import (
    ISO_4217_MINOR_UNITS,
    SATS_PER_BTC,
    DcaLeg,
    ScaledSettlement,
    allocate_dca,
    allocate_operator_split_legs,
    back_derive_commission,
    fiat_for_net,
    from_minor_units,
    is_currency_code,
    minor_units,
    price_per_sat,
    quantize_fiat,
    scale_for_partial_dispense,
    split_two_stage_commission,
    to_minor_units,
)

# --- currency helpers --------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("GTQ", 2),
        ("USD", 2),
        ("EUR", 2),
        ("MXN", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("XAF", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
    ],
)
def test_minor_units_of_known_currencies(code: str, exponent: int) -> None:
    assert minor_units(code) == exponent


def test_minor_units_ignores_case_and_spaces() -> None:
    assert minor_units("gtq") == 2
    assert minor_units(" jpy ") == 0
    assert minor_units("Kwd") == 3


@pytest.mark.parametrize("code", ["XXX", "BTC", "", "HRK", "EURO"])
def test_minor_units_of_unknown_code_defaults_to_two(code: str) -> None:
    assert minor_units(code) == 2


def test_is_currency_code_accepts_only_canonical_active_codes() -> None:
    assert is_currency_code("GTQ")
    assert is_currency_code("JPY")
    assert not is_currency_code("gtq")  # callers normalise before validating
    assert not is_currency_code("XXX")  # "no currency" is not cash
    assert not is_currency_code("HRK")  # withdrawn in 2023
    assert not is_currency_code("")


def test_currency_table_is_well_formed() -> None:
    assert len(ISO_4217_MINOR_UNITS) > 150
    for code, exponent in ISO_4217_MINOR_UNITS.items():
        assert len(code) == 3
        assert code.isalpha()
        assert code.isupper()
        assert exponent in (0, 2, 3, 4)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.005", "GTQ", "1.00"),  # half to even
        ("1.015", "GTQ", "1.02"),
        ("1.0051", "GTQ", "1.01"),
        ("1800", "GTQ", "1800.00"),
        ("1234.5", "JPY", "1234"),
        ("1235.5", "JPY", "1236"),
        ("1.2345", "KWD", "1.234"),
        ("1.2355", "KWD", "1.236"),
        ("-1.005", "gtq", "-1.00"),
    ],
)
def test_quantize_fiat_rounds_half_even_to_minor_unit(
    amount: str, currency: str, expected: str
) -> None:
    result = quantize_fiat(Decimal(amount), currency)
    assert result == Decimal(expected)
    assert str(result) == expected


def test_quantize_fiat_refuses_nan_and_float() -> None:
    with pytest.raises(ValueError):
        quantize_fiat(Decimal("NaN"), "GTQ")
    with pytest.raises(TypeError):
        quantize_fiat(1.5, "GTQ")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("1800.00", "GTQ", 180_000),
        ("1800", "GTQ", 180_000),
        ("1.005", "GTQ", 100),  # half to even
        ("1234", "JPY", 1_234),
        ("1.234", "KWD", 1_234),
        ("0", "USD", 0),
    ],
)
def test_minor_units_round_trip(amount: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor
    assert from_minor_units(minor, currency) == quantize_fiat(Decimal(amount), currency)


def test_from_minor_units_keeps_the_currency_exponent() -> None:
    assert str(from_minor_units(180_000, "GTQ")) == "1800.00"
    assert str(from_minor_units(5, "GTQ")) == "0.05"
    assert str(from_minor_units(1_234, "JPY")) == "1234"
    assert str(from_minor_units(-1_234, "KWD")) == "-1.234"


# --- Lamassu back-derivation ---------------------------------------------------


def test_back_derive_fallback_example() -> None:
    assert back_derive_commission(266_800, Decimal("0.05")) == (254_095, 12_705)


def test_back_derive_is_exact_where_float_is_not() -> None:
    # 105 / 1.05 is 99.99999999999999 in float; exactly 100 here.
    assert back_derive_commission(105, Decimal("0.05")) == (100, 5)


@pytest.mark.parametrize(
    ("gross", "pct", "expected"),
    [
        (100_000, "0.0875", (91_954, 8_046)),
        (100_000, "0.05500", (94_786, 5_214)),
        (0, "0.05", (0, 0)),
        (266_800, "0", (266_800, 0)),
    ],
)
def test_back_derive_real_rates(
    gross: int, pct: str, expected: tuple[int, int]
) -> None:
    assert back_derive_commission(gross, Decimal(pct)) == expected


def test_back_derive_full_discount_means_no_commission() -> None:
    assert back_derive_commission(266_800, Decimal("0.05"), 100) == (266_800, 0)


def test_back_derive_half_discount_halves_the_rate() -> None:
    for gross in (266_800, 1_000_003, 99):
        assert back_derive_commission(
            gross, Decimal("0.05"), 50
        ) == back_derive_commission(gross, Decimal("0.025"))
    assert back_derive_commission(102_500, Decimal("0.05"), 50) == (100_000, 2_500)


def test_back_derive_ninety_percent_discount() -> None:
    # e = 0.0875 * 10 / 100 = 0.00875
    assert back_derive_commission(100_875, Decimal("0.0875"), 90) == (100_000, 875)


@pytest.mark.parametrize(
    ("gross", "pct", "discount"),
    [
        (-1, "0.05", 0),
        (100, "-0.01", 0),
        (100, "0.05", -1),
        (100, "0.05", 101),
        (100, "NaN", 0),
        (100, "Infinity", 0),
    ],
)
def test_back_derive_rejects_bad_input(gross: int, pct: str, discount: int) -> None:
    with pytest.raises(ValueError):
        back_derive_commission(gross, Decimal(pct), discount)


# --- two-stage commission split ------------------------------------------------


def test_two_stage_plan_example() -> None:
    platform, operator = split_two_stage_commission(100, Decimal("0.30"))
    assert (platform, operator) == (30, 70)
    legs = allocate_operator_split_legs(
        operator, [Decimal("0.5"), Decimal("0.3"), Decimal("0.2")]
    )
    assert legs == [35, 21, 14]
    assert platform + sum(legs) == 100


def test_two_stage_rounds_half_to_even() -> None:
    assert split_two_stage_commission(7_965, Decimal("0.30")) == (2_390, 5_575)
    assert split_two_stage_commission(7_975, Decimal("0.30")) == (2_392, 5_583)
    assert split_two_stage_commission(5, Decimal("0.5")) == (2, 3)


@pytest.mark.parametrize(
    ("commission", "pct", "expected"),
    [
        (100, "0", (0, 100)),
        (100, "1", (100, 0)),
        (0, "0.3", (0, 0)),
        (1, "0.3", (0, 1)),
    ],
)
def test_two_stage_edges(commission: int, pct: str, expected: tuple[int, int]) -> None:
    assert split_two_stage_commission(commission, Decimal(pct)) == expected


@pytest.mark.parametrize(
    ("commission", "pct"), [(100, "-0.01"), (100, "1.01"), (-1, "0.3"), (1, "NaN")]
)
def test_two_stage_rejects_bad_input(commission: int, pct: str) -> None:
    with pytest.raises(ValueError):
        split_two_stage_commission(commission, Decimal(pct))


def test_operator_legs_last_absorbs_remainder() -> None:
    pcts = [Decimal("0.3333"), Decimal("0.3333"), Decimal("0.3334")]
    assert allocate_operator_split_legs(10, pcts) == [3, 3, 4]
    assert allocate_operator_split_legs(0, pcts) == [0, 0, 0]


def test_operator_legs_single_and_empty() -> None:
    assert allocate_operator_split_legs(70, [Decimal("1")]) == [70]
    assert allocate_operator_split_legs(70, []) == []


@pytest.mark.parametrize(
    "pcts",
    [
        ["0.5", "0.49"],
        ["0.5", "0.51"],
        ["1.5", "-0.5"],
        ["0"],
        ["NaN"],
    ],
)
def test_operator_legs_reject_pcts_not_summing_to_one(pcts: list[str]) -> None:
    with pytest.raises(ValueError):
        allocate_operator_split_legs(70, [Decimal(p) for p in pcts])


def test_operator_legs_reject_negative_total() -> None:
    with pytest.raises(ValueError):
        allocate_operator_split_legs(-1, [Decimal(1)])


# --- fiat value and price ------------------------------------------------------


def test_fiat_for_net_prefers_fiat_amount() -> None:
    assert fiat_for_net(259_029, Decimal("800000"), Decimal("2000")) == Decimal(2000)


def test_fiat_for_net_from_rate() -> None:
    assert fiat_for_net(SATS_PER_BTC // 2, Decimal("800000"), None) == Decimal(400000)
    assert fiat_for_net(1, Decimal("772111.20"), Decimal(0)) == Decimal("0.0077211120")


@pytest.mark.parametrize(
    ("net", "rate", "fiat"),
    [
        (259_029, None, None),
        (259_029, Decimal(0), None),
        (259_029, Decimal(-1), Decimal(0)),
        (0, Decimal(800_000), None),
    ],
)
def test_fiat_for_net_unknown(
    net: int, rate: Decimal | None, fiat: Decimal | None
) -> None:
    assert fiat_for_net(net, rate, fiat) is None


def test_price_per_sat() -> None:
    assert price_per_sat(Decimal(1), 4) == Decimal("0.25")
    price = price_per_sat(Decimal(2000), 259_029)
    assert abs(price * 259_029 - 2000) < Decimal("1e-50")
    with pytest.raises(ValueError):
        price_per_sat(Decimal(2000), 0)
    with pytest.raises(ValueError):
        price_per_sat(Decimal(0), 10)


# --- DCA legs ------------------------------------------------------------------


def test_dca_plan_example_in_sync() -> None:
    result = allocate_dca(
        259_029, Decimal(2000), {"A": Decimal(9000), "B": Decimal(1000)}, "GTQ"
    )
    assert result.legs == (
        DcaLeg("A", 233_126, Decimal("1800.00")),
        DcaLeg("B", 25_903, Decimal("200.00")),
    )
    assert result.leftover_sats == 0
    assert result.sync_mismatch is False


def test_dca_plan_example_sync_mismatch() -> None:
    result = allocate_dca(
        259_029, Decimal(2000), {"A": Decimal(1500), "B": Decimal(100)}, "GTQ"
    )
    assert result.legs == (
        DcaLeg("A", 194_271, Decimal("1499.99")),
        DcaLeg("B", 12_951, Decimal("100.00")),
    )
    assert result.leftover_sats == 51_807
    assert result.sync_mismatch is True


def test_dca_skips_empty_balances_and_keeps_input_order() -> None:
    balances = {"C": Decimal(1000), "B": Decimal(0), "A": Decimal(9000)}
    result = allocate_dca(259_029, Decimal(2000), balances, "GTQ")
    assert [leg.key for leg in result.legs] == ["C", "A"]
    assert [leg.sats for leg in result.legs] == [25_903, 233_126]


@pytest.mark.parametrize("balances", [{}, {"A": Decimal(0), "B": Decimal("0.00")}])
def test_dca_without_eligible_lp_leaves_everything(
    balances: dict[str, Decimal],
) -> None:
    result = allocate_dca(259_029, Decimal(2000), balances, "GTQ")
    assert result.legs == ()
    assert result.leftover_sats == 259_029
    assert result.sync_mismatch is False


def test_dca_zero_net() -> None:
    result = allocate_dca(0, Decimal(2000), {"A": Decimal(10)}, "GTQ")
    assert result.legs == ()
    assert result.leftover_sats == 0
    assert result.sync_mismatch is True


def test_dca_ties_do_not_depend_on_input_order() -> None:
    forward = allocate_dca(3, Decimal(1), {"A": Decimal(1), "B": Decimal(1)}, "GTQ")
    backward = allocate_dca(3, Decimal(1), {"B": Decimal(1), "A": Decimal(1)}, "GTQ")
    assert {leg.key: leg.sats for leg in forward.legs} == {"A": 2, "B": 1}
    assert {leg.key: leg.sats for leg in backward.legs} == {"A": 2, "B": 1}


def test_dca_charge_is_capped_at_balance() -> None:
    # R == F; A's extra remainder sat is worth 1.33 > its 1.00 balance.
    result = allocate_dca(3, Decimal(2), {"A": Decimal(1), "B": Decimal(1)}, "GTQ")
    assert result.legs == (
        DcaLeg("A", 2, Decimal("1.00")),
        DcaLeg("B", 1, Decimal("0.67")),
    )


def test_dca_cap_rounds_an_off_grid_balance_down() -> None:
    # 1009 sats at 0.001 is 1.009, which would round to 1.01 > 1.009.
    result = allocate_dca(5_000, Decimal(5), {"A": Decimal("1.009")}, "GTQ")
    assert result.legs == (DcaLeg("A", 1_009, Decimal("1.00")),)
    assert result.leftover_sats == 3_991


def test_dca_quantizes_to_currency_minor_unit() -> None:
    result = allocate_dca(
        1_000_000, Decimal(15_000), {"A": Decimal(10_000), "B": Decimal(5_000)}, "JPY"
    )
    assert result.legs == (
        DcaLeg("A", 666_667, Decimal(10_000)),
        DcaLeg("B", 333_333, Decimal(5_000)),
    )


@pytest.mark.parametrize(
    ("net", "fiat", "balances"),
    [
        (-1, "2000", {"A": "1"}),
        (100, "0", {"A": "1"}),
        (100, "-5", {"A": "1"}),
        (100, "NaN", {"A": "1"}),
        (100, "2000", {"A": "-1"}),
        (100, "2000", {"A": "sNaN"}),
    ],
)
def test_dca_rejects_bad_input(net: int, fiat: str, balances: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        allocate_dca(
            net, Decimal(fiat), {k: Decimal(v) for k, v in balances.items()}, "GTQ"
        )


# --- partial dispense ----------------------------------------------------------

ORIGINAL = (266_800, 254_095, 12_705, Decimal("2000.00"), "GTQ")


def test_partial_dispense_half() -> None:
    result = scale_for_partial_dispense(*ORIGINAL, fraction=Decimal("0.5"))
    # 12 705 / 2 = 6 352.5 rounds to even.
    assert result == ScaledSettlement(133_400, 127_048, 6_352, Decimal("1000.00"))


def test_partial_dispense_nothing() -> None:
    result = scale_for_partial_dispense(*ORIGINAL, fraction=Decimal(0))
    assert result == ScaledSettlement(0, 0, 0, Decimal("0.00"))


def test_partial_dispense_full_is_identity() -> None:
    result = scale_for_partial_dispense(*ORIGINAL, fraction=Decimal(1))
    assert result == ScaledSettlement(266_800, 254_095, 12_705, Decimal("2000.00"))


def test_partial_dispense_by_sats() -> None:
    result = scale_for_partial_dispense(*ORIGINAL, dispensed_sats=200_100)
    # ratio 0.75: commission 9 528.75 -> 9 529, fiat 1 500.00
    assert result == ScaledSettlement(200_100, 190_571, 9_529, Decimal("1500.00"))


def test_partial_dispense_without_fiat() -> None:
    result = scale_for_partial_dispense(
        1_000, 950, 50, None, "GTQ", fraction=Decimal("0.1")
    )
    assert result == ScaledSettlement(100, 95, 5, None)


def test_partial_dispense_of_empty_settlement() -> None:
    result = scale_for_partial_dispense(0, 0, 0, None, "GTQ", dispensed_sats=0)
    assert result == ScaledSettlement(0, 0, 0, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"fraction": Decimal("0.5"), "dispensed_sats": 100},
        {"fraction": Decimal("1.01")},
        {"fraction": Decimal("-0.1")},
        {"fraction": Decimal("NaN")},
        {"dispensed_sats": 266_801},
        {"dispensed_sats": -1},
    ],
)
def test_partial_dispense_rejects_bad_input(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        scale_for_partial_dispense(*ORIGINAL, **kwargs)  # type: ignore[arg-type]


def test_partial_dispense_rejects_parts_not_adding_up() -> None:
    with pytest.raises(ValueError):
        scale_for_partial_dispense(
            266_800, 254_095, 12_704, None, "GTQ", fraction=Decimal(1)
        )
