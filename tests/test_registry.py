"""Registry: one lowering per (domain, op type, opset), whatever order modules register in."""

from __future__ import annotations

import pytest

from onnx2tflite_direct import lowering  # noqa: F401  (registers every lowering)
from onnx2tflite_direct.policies import same_as_input
from onnx2tflite_direct.registry import REGISTRY, OpSpec, Registry


def _spec(since, until=None, op_type="Foo", domain=""):
    return OpSpec(op_type, lambda ctx: None, same_as_input, domain, since, until)


@pytest.mark.parametrize(
    ("first", "second"),
    [((1, None), (13, None)), ((1, 12), (12, None)), ((7, 9), (1, 7)), ((5, 5), (5, 5))],
)
def test_overlapping_opset_ranges_are_refused(first, second):
    reg = Registry()
    reg.add(_spec(*first))
    with pytest.raises(ValueError, match="Foo: opsets .* overlap"):
        reg.add(_spec(*second))
    assert len(reg.specs()) == 1


def test_adjacent_ranges_other_ops_and_domains_are_accepted():
    reg = Registry()
    reg.add(_spec(1, 12))
    reg.add(_spec(13, None))
    reg.add(_spec(1, None, op_type="Bar"))
    reg.add(_spec(1, None, domain="com.microsoft"))
    assert reg.lookup("", "Foo", 12).until == 12
    assert reg.lookup("", "Foo", 13).since == 13
    assert reg.lookup("com.microsoft", "Foo", 1) is not None
    assert reg.lookup("", "Foo", 0) is None


def test_a_second_decomposition_is_refused():
    reg = Registry()
    reg.add_decomposition("", "Gelu", lambda ctx: None)
    with pytest.raises(ValueError, match="Gelu: a decomposition is registered already"):
        reg.add_decomposition("", "Gelu", lambda ctx: None)


def test_the_package_registry_has_no_overlaps():
    """Re-adding every registered spec to a fresh registry passes the same check."""
    fresh = Registry()
    for spec in REGISTRY.specs():
        fresh.add(spec)
    assert len(fresh.specs()) == len(REGISTRY.specs()) > 100
