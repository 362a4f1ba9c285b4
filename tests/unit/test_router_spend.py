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
    spend = Spend(proven=True)  # the gate is open (the shadow ledger's tests below)
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


def test_the_premium_write_gate_starts_closed_and_no_traffic_opens_it() -> None:
    """Before any run would have paid back its premium, a premium write is a bet nothing has backed."""
    spend = Spend()
    assert not spend.proven and not spend.runs_paid
    for _ in range(5):  # top-k and reads cost no more than plain input, but prove nothing about writes
        spend.record((), charge=1.0, price=1.0, stable=0, tail=500)
        spend.record(RUN, charge=0.1, price=0.1, stable=1000, tail=0)
    assert spend.premium < 0 and not spend.runs_paid


def test_a_shadow_run_that_is_read_enough_opens_the_gate() -> None:
    """A shadow write of 1000 tokens at 1.25x owes 250; one read at 0.1x would have saved 900."""
    spend = Spend()
    spend.shadow_write(RUN, charge=1.25, stable=1000, now=0.0)
    assert spend.shadow_premium == pytest.approx(250) and spend.shadow_cached(RUN, 299.0, 300.0)
    assert not spend.runs_paid and spend.paid == 0.0 and spend.questions == 0  # nothing was charged
    spend.shadow_read(RUN, charge=0.1, stable=1000, now=200.0)
    assert spend.proven and spend.runs_paid and spend.shadow_premium == pytest.approx(-650)
    assert spend.shadow_writes == 1 and spend.shadow_reads == 1


def test_shadow_writes_must_all_be_paid_back_before_the_gate_opens() -> None:
    """Three runs written in the shadow (750 owed), each read once would save 900 a read: after the first
    read 150 is still owed overall (so it stays closed), after the second it has paid."""
    spend = Spend()
    for i, key in enumerate([("a",), ("b",), ("c",), ("d",)]):
        spend.shadow_write(key, charge=1.25, stable=1000, now=float(i))
    spend.shadow_read(("a",), charge=0.1, stable=1000, now=10.0)
    assert spend.shadow_premium == pytest.approx(100) and not spend.proven
    spend.shadow_read(("b",), charge=0.1, stable=1000, now=11.0)
    assert spend.proven


def test_a_shadow_run_expires_like_a_cached_one() -> None:
    spend = Spend()
    spend.shadow_write(RUN, charge=1.25, stable=1000, now=0.0)
    spend.expire_shadow(now=299.0, horizon=300.0)
    assert spend.shadow_cached(RUN, 299.0, 300.0)
    spend.expire_shadow(now=300.0, horizon=300.0)  # written 300 s ago: it would have left the cache
    assert not spend.shadow_cached(RUN, 300.0, 300.0) and RUN not in spend.shadow_sent
    with pytest.raises(ValueError, match="no shadow write"):
        spend.shadow_read(RUN, charge=0.1, stable=1000, now=301.0)
