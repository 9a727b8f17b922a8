from decimal import Decimal

import pytest

from appliance.model.errors import ValidationError
from appliance.model.instrument import Instrument, InstrumentId
from appliance.model.money import dec_str, parse_decimal, round_to_step


@pytest.mark.parametrize("value,reason", [(0.1, "float"), ("abc", "not a decimal"), ("", "empty"), ("NaN", "finite"),
                                          ("-1", "> 0"), (True, "bool")])
def test_parse_decimal_rejects_with_field_name(value, reason):
    with pytest.raises(ValidationError) as err:
        parse_decimal(value, "qty", positive=True)
    assert err.value.field == "qty" and reason in err.value.reason


def test_round_to_step_modes():
    assert round_to_step(Decimal("1.23456789"), Decimal("0.001")) == Decimal("1.234")
    assert round_to_step(Decimal("1.2341"), Decimal("0.001"), "up") == Decimal("1.235")
    assert round_to_step(Decimal("0.0000533"), Decimal("0.00000001"), "nearest") == Decimal("0.0000533")
    assert round_to_step(Decimal("0.0000000099"), Decimal("0.00000001")) == 0


def test_dec_str_has_no_exponent():
    assert dec_str(Decimal("5.33E-5")) == "0.0000533"
    assert dec_str(Decimal("100.00")) == "100"
    assert dec_str(Decimal("0E-8")) == "0"


def test_instrument_rounding_and_minimums():
    inst = Instrument(InstrumentId("paper", "ADA/BTC"), "ADA", "BTC", Decimal("0.00000001"), Decimal("1"),
                      min_qty=Decimal("1"), min_notional=Decimal("0.0005"))
    assert inst.round_price(Decimal("0.000053339"), "buy") == Decimal("0.00005333")
    assert inst.round_price(Decimal("0.000053331"), "sell") == Decimal("0.00005334")
    assert inst.round_qty(Decimal("12.9")) == Decimal("12")
    inst.check_order_size(Decimal("10"), Decimal("0.00005"))
    with pytest.raises(ValidationError, match="below the minimum 0.0005"):
        inst.check_order_size(Decimal("9"), Decimal("0.00005"))


def test_instrument_id_parse():
    assert InstrumentId.parse("ADA/BTC@paper") == InstrumentId("paper", "ADA/BTC")
    assert InstrumentId.parse("ADA/BTC", default_venue="paper") == InstrumentId("paper", "ADA/BTC")
    with pytest.raises(ValidationError) as err:
        InstrumentId.parse("ADABTC@paper", field="instruments[0]")
    assert err.value.field == "instruments[0]"
