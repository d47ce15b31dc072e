"""dwstft bench budget: the recipe phases each Table 2 row trains with, and the hours."""

from __future__ import annotations

import pytest

from dwstft.bench.budget import RowBudget, format_budget_table, recipe_phases, run_budget
from dwstft.train import make_config


def test_recipe_phases_are_the_published_schedules():
    paper = make_config("paper", model="stftnet_b8_f128", dataset="cifar10", output="o")
    baseline = make_config("baseline", model="mobilenetv2", dataset="cifar100", output="o")
    assert recipe_phases(paper) == ((300, 64), (100, 128))
    assert recipe_phases(baseline) == ((200, 128),)


def test_hours_are_images_over_throughput():
    row = RowBudget("m", "paper", ((300, 64), (100, 128)), {64: 1000.0, 128: 2000.0}, None)
    # CIFAR: 50,000 training images per epoch; two datasets.
    expected = 2 * (300 * 50_000 / 1000 + 100 * 50_000 / 2000) / 3600
    assert row.hours(row.eager_ips, datasets=2) == pytest.approx(expected)
    table = format_budget_table([row], "header")
    assert f"| {expected:.1f} |" in table and f"**{expected:.1f}**" in table


@pytest.mark.slow
def test_one_row_is_measured_at_each_batch_size_of_its_recipe():
    (row,) = run_budget(("stftnet_b8_f128",), rounds=1, progress=False)
    assert row.recipe == "paper" and set(row.eager_ips) == {64, 128}
    assert all(v > 0 for v in row.eager_ips.values()) and row.compiled_ips is None


@pytest.mark.slow
def test_extra_batches_are_measured_but_the_hours_use_the_recipe():
    (row,) = run_budget(("mobilenetv2",), rounds=1, extra_batches=(8,), progress=False)
    assert set(row.eager_ips) == {8, 128}
    assert row.hours(row.eager_ips, 1) == pytest.approx(200 * 50_000 / row.eager_ips[128] / 3600)
