"""tfl.Subgraph indexes and the tfl_edit editor: names, new tensors, staged operator edits."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from onnx2tflite_direct import tfl
from onnx2tflite_direct.tfl_edit import Editor, Names, unique_names


def _t(name: str, data=None) -> tfl.Tensor:
    return tfl.Tensor(name, np.float32, (2,), data=data)


def _chain():
    """x -> A -> a -> B(a, a, c) -> b; C reads x; output b."""
    x, a, b, c, y = _t("x"), _t("a"), _t("b"), _t("c", np.ones(2, np.float32)), _t("y")
    op_a = tfl.Operator("A", [x], [a])
    op_b = tfl.Operator("B", [a, a, c, None], [b])
    op_c = tfl.Operator("C", [x], [y])
    sub = tfl.Subgraph(operators=[op_a, op_b, op_c], inputs=[x], outputs=[b])
    return sub, (x, a, b, c, y), (op_a, op_b, op_c)


def test_producers_and_consumers():
    sub, (x, a, b, c, y), (op_a, op_b, op_c) = _chain()
    assert sub.producers() == {id(a): op_a, id(b): op_b, id(y): op_c}
    assert sub.producers(wanted={id(b), id(y)}, opcodes={"B"}) == {id(b): op_b}
    readers = sub.consumers()
    assert readers[id(x)] == [(op_a, 0), (op_c, 0)]
    assert readers[id(a)] == [(op_b, 0), (op_b, 1)]  # read twice: listed twice
    assert readers[id(c)] == [(op_b, 2)]
    assert id(b) not in readers
    assert sub.consumers(wanted={id(c)}) == {id(c): [(op_b, 2)]}


def _driver_names(bases):
    """The lowering driver's former generator: base, then base_1, base_2 ... first free."""
    names, out = set(), []
    for base in bases:
        name, k = base, 1
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        out.append(name)
    return out


def _builder_names(names_in):
    """The builder's former writer-time de-duplication, in tensor order."""
    taken, seen, next_suffix, out = set(names_in), set(), {}, []
    for base in names_in:
        name = base
        if name in seen:
            k = next_suffix.get(base, 1)
            while f"{base}_{k}" in taken:
                k += 1
            next_suffix[base] = k + 1
            name = f"{base}_{k}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


NAME_LISTS = st.lists(st.sampled_from(["a", "a_1", "a_2", "b", "b_1", "a_1_1"]), max_size=30)


@given(NAME_LISTS)
def test_names_take_matches_the_driver_scheme(bases):
    names = Names()
    assert [names.take(b) for b in bases] == _driver_names(bases)


@given(NAME_LISTS)
def test_unique_names_matches_the_builder_scheme(given_names):
    out = unique_names([_t(n) for n in given_names])
    assert out == _builder_names(given_names)
    assert len(set(out)) == len(out)


def test_fresh_names_avoid_every_tensor_of_the_subgraph():
    sub, *_ = _chain()
    ed = Editor(sub)
    assert ed.temp("a", np.float32, (2,)).name == "a_1"
    assert ed.const("a", np.zeros(3, np.int32)).name == "a_2"
    assert ed.temp("new", np.float32, ()).name == "new"
    kept = Editor(sub, fresh_names=False)
    assert kept.temp("a", np.float32, (2,)).name == "a"  # the builder settles duplicates


def test_const_keeps_dtype_shape_and_c_order():
    ed = Editor(tfl.Subgraph())
    t = ed.const("w", np.arange(6, dtype=np.float32).reshape(2, 3).T)
    assert t.shape == (3, 2) and t.data.flags["C_CONTIGUOUS"] and t.dtype == np.float32
    assert ed.const("s", 3, np.int32).shape == ()
    assert ed.const("v", [1, 2], np.int32).data.dtype == np.int32


def test_staged_edits_apply_in_one_pass_in_order():
    sub, (x, a, b, c, y), (op_a, op_b, op_c) = _chain()
    ed = Editor(sub)
    first, before_b, after_a, new_c = (tfl.Operator(n, [], []) for n in ("P", "Q", "R", "S"))
    ed.prepend([first])
    ed.insert_before(op_b, [before_b])
    ed.insert_after(op_a, [after_a])
    ed.replace(op_c, [new_c])
    assert [op.opcode for op in sub.operators] == ["A", "B", "C"]  # nothing until commit
    held = sub.operators
    assert ed.commit() == 1
    assert [op.opcode for op in sub.operators] == ["P", "A", "R", "Q", "B", "S"]
    assert sub.operators is held  # edited in place
    ed.remove(op_a)
    assert ed.removed(op_a) and not ed.removed(op_b)
    assert ed.commit() == 1 and [op.opcode for op in sub.operators] == ["P", "R", "Q", "B", "S"]
    assert ed.commit() == 0


def test_op_takes_the_onnx_node_of_like():
    like = tfl.Operator("CONV_2D", [], [], onnx_node="conv_1")
    ed = Editor(tfl.Subgraph())
    made = ed.op("RELU", [_t("i")], [_t("o")], like=like, fused_activation_function="NONE")
    assert made.onnx_node == "conv_1" and made.options == {"fused_activation_function": "NONE"}
    reshape = ed.reshape(_t("i"), tfl.Tensor("o", np.float32, (1, 2)), like)
    assert reshape.opcode == "RESHAPE" and reshape.inputs[1].data.tolist() == [1, 2]
    assert reshape.inputs[1].dtype == np.int32
