"""When an integer file may not keep float ops, and the refusal that says which and why.

Why a module: the ``*_full_integer_quant*`` files promise integer kernels end to end (NPUs,
Edge TPU-class accelerators and microcontrollers have no float units). An op the integer plan
leaves in float (``integer_plan``: no LiteRT integer kernel at that width, a WHILE loop of a
recurrent layer, an override-free float island) would make such a file quietly float, so
those files are strict by default: the file is refused and named with every offending node, op
and reason, and the other files (whose float islands are reported) are still written.
``--strict-integer`` extends the rule to the float-I/O files and refuses the whole conversion;
``--allow-float-ops`` restores float islands in the full-integer files.
"""

from __future__ import annotations

from .. import errors
from ..lowering.recurrent import ALTERNATIVE_UNROLL_STEPS
from .integer_plan import ISOLATED, PARTLY_FLOAT

MAX_LISTED = 12  # ops named in a refusal message (all are in the report)
# Why LiteRT cannot run these in integer (said instead of the generic "no integer kernel").
KNOWN_GAPS = {
    "WHILE": "a recurrent layer (LSTM/GRU/RNN) keeps its WHILE loop, whose body is not "
    "quantized: the full-integer files swap in a form with integer kernels, an LSTM that fits "
    "LiteRT's integer UNIDIRECTIONAL_SEQUENCE_LSTM (int8 files; any sequence length), else the "
    "unrolled cell, which needs a static sequence length and batch (pin them with "
    f"--input-shape) and at most {ALTERNATIVE_UNROLL_STEPS} steps x directions",
    "LOCAL_RESPONSE_NORMALIZATION": "LiteRT has no int8/int16 LOCAL_RESPONSE_NORMALIZATION kernel",
}

# Help texts of the two options (``options.ConvertOptions``; the README tables show them).
STRICT_INTEGER_HELP = (
    "refuse the conversion (exit 3, `integer_kernel_unavailable`, naming the ops) when any "
    "integer file, the float-I/O ones too, would keep ops without an acceptable integer kernel "
    "in float; a softmax-like head is then quantized too (integer output, fixed 1/256 step) "
    "instead of computed in float (the full-integer files are strict unless `--allow-float-ops`)"
)
ALLOW_FLOAT_OPS_HELP = (
    "let the `*_full_integer_quant*` files keep ops without an acceptable integer kernel as "
    "float islands. By default such a file is not written: a warning "
    "(`integer_kernel_unavailable`) names each node, op and reason, the report's `quantization` "
    "section marks the file `refused`, and the other files are written"
)
REMEDY = (
    "use the float-I/O *_integer_quant file (it keeps them as reported float islands), mark "
    "them --quant-override 'PATTERN=float' to accept them as float islands, or pass "
    "--allow-float-ops to write the full-integer file with float ops"
)


def is_strict(options, full: bool) -> bool:
    """Does this integer file refuse float ops? Full-integer files do unless
    ``allow_float_ops``; every integer file does with ``strict_integer``."""
    return bool(options.strict_integer or (full and not options.allow_float_ops))


def refused_ops(float_ops: list[dict]) -> list[dict]:
    """The float ops a strict file refuses: not an island the user asked for
    (``--quant-override ...=float``), nor one only kept float next to refused ops."""
    return [f for f in float_ops if f["reason"] != ISOLATED and not f.get("override")]


def refusal(refused: list[dict]) -> errors.UnsupportedError:
    """``integer_kernel_unavailable`` naming each refused node with its ops and the reason
    (an op of the node without a kernel, not its siblings kept float with it), and what the
    user can do instead."""
    nodes: dict[str, dict] = {}
    for f in refused:
        entry = nodes.setdefault(f["onnx_node"], {"ops": [], "why": []})
        if f["op"] not in entry["ops"]:
            entry["ops"].append(f["op"])
        own = f"{f['op']}: {KNOWN_GAPS.get(f['op'], f['reason'])}"
        if not f["reason"].startswith(PARTLY_FLOAT) and own not in entry["why"]:
            entry["why"].append(own)
    listed = [
        f"node {node!r} ({', '.join(e['ops'])}; {'; '.join(e['why'] or ['kept whole in float'])})"
        for node, e in nodes.items()
    ]
    more = len(listed) - MAX_LISTED
    text = "; ".join(listed[:MAX_LISTED])
    if more > 0:
        text += f"; and {more} more node(s) (see the report's quantization section)"
    return errors.UnsupportedError(
        errors.INTEGER_KERNEL_UNAVAILABLE,
        f"no acceptable integer kernel in {len(nodes)} node(s): {text}. To go on: {REMEDY}",
    )
