"""The router's record of what its traffic cost (``ragcache.router.spend``): pure arithmetic on charges."""

from __future__ import annotations

import pytest

from ragcache.router.spend import Spend

RUN = ("category:a",)


def test_a_write_is_counted_at_the_price_assumed_and_its_reads_pay_the_rest() -> None:
    spend = Spend()
    spend.record(RUN, charge=1.25, price=0.25, stable=1000, tail=100)  # written, assumed reused 9 times
    assert spend.paid == pytest.approx(1350) and spend.counted == pytest.approx(350)
    assert spend.open_bet and spend.debts[RUN].owed == pytest.approx(1000)
    for _ in range(6):  # each read is counted at the assumed 0.25 until the write is paid off
        spend.record(RUN, charge=0.1, price=0.1, stable=1000, tail=100)
    assert spend.debts[RUN].owed == pytest.approx(100)
    spend.record(RUN, charge=0.1, price=0.1, stable=1000, tail=100)  # pays the last 100
    spend.record(RUN, charge=0.1, price=0.1, stable=1000, tail=100)  # nothing owed: counted as charged
    assert not spend.open_bet
    assert spend.counted == pytest.approx(spend.paid)  # a bet repaid: the mean is what was paid
    assert spend.mean_tokens == pytest.approx(spend.paid / 9)


def test_a_run_that_leaves_the_cache_still_owing_is_counted_in_full() -> None:
    spend = Spend()
    spend.record(RUN, charge=1.25, price=0.25, stable=1000, tail=0)
    spend.record((), charge=1.0, price=1.0, stable=0, tail=500)  # top-k: plain input, no bet
    spend.settle(lambda key: True)
    assert spend.open_bet and spend.counted == pytest.approx(750)
    spend.settle(lambda key: key != RUN)  # expired unread: the bet failed
    assert not spend.open_bet and spend.counted == pytest.approx(spend.paid) == pytest.approx(1750)


def test_runs_have_paid_while_their_prefixes_cost_no_more_than_plain_input() -> None:
    spend = Spend()
    assert spend.runs_paid and spend.mean_tokens == 0.0  # no traffic: nothing to hold back
    spend.record(RUN, charge=1.25, price=0.2, stable=1000, tail=0)  # 250 above plain input
    assert not spend.runs_paid
    spend.record(RUN, charge=0.1, price=0.1, stable=1000, tail=0)  # saves 900
    assert spend.runs_paid and spend.premium == pytest.approx(-650)


def test_a_negative_charge_or_token_count_is_refused() -> None:
    with pytest.raises(ValueError, match="never negative"):
        Spend().record(RUN, charge=-0.1, price=0.1, stable=10, tail=0)
    with pytest.raises(ValueError, match="never negative"):
        Spend().record(RUN, charge=0.1, price=0.1, stable=10, tail=-1)
