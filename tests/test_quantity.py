from decimal import Decimal

import pytest

from sovereign_hub.policy.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("4Gi", Decimal(4 * 2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1k", Decimal(1000)),
        ("100n", Decimal("1e-7")),
        ("1e3", Decimal(1000)),
        ("1E-3", Decimal("0.001")),
        (".5", Decimal("0.5")),
        ("-2", Decimal(-2)),
    ],
)
def test_parses_kubernetes_quantities(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "4GB", "Gi", "1.2.3", "4 Gi", "ten", "1Ki2", "0x10"])
def test_rejects_non_quantities_with_examples(text):
    with pytest.raises(QuantityError, match=r"is not a Kubernetes quantity \(e\.g\. 500m"):
        parse_quantity(text)
