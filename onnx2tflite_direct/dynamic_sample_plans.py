"""Sample plans of the dynamic-shape lowering: which sample sizes to try, and in what order,
when the model rejects the declared ones or gives graphs that differ between them.

The declared samples first; then the batch symbols merged into one; then larger sizes
(``SIZE_RETRY_SAMPLES``); last the batch fixed at 1 when the model takes no other batch.
The first plan whose lowerings compare (``dynamic_compare``) is the answer. Within a plan, a
strided window whose output size the samples leave equal is resolved by sampling its symbol
a whole stride apart (``_widening``).
"""

from __future__ import annotations

from . import errors
from .dynamic_compare import FixedBySamples, Lowering, SampleRejected, lower_and_compare
from .dynamic_symbols import (
    BATCH_SAMPLES,
    PIN_HINT,
    DynamicShapeModel,
    Inexpressible,
    Symbol,
    describe,
)
from .errors import UnsupportedError

# Sample retries. A model may reject the first sample sizes without its dims being fixed: an
# audio front end needs a window's worth of samples (a slice past 64 is empty), and inputs
# whose unnamed dims must agree (two batch dims concatenated) reject different values. The
# sizes are then tried with the batch symbols merged, and larger (a step of 64 keeps them
# multiples of 32 for strided backbones and inside the narrow range a one-frame model takes);
# last a narrow pair for a model that takes only a narrow range of small sizes: a text
# recognizer whose height must pool to one row before a reshape to a constant 1 (PP-OCR's
# 48-high crops: heights 16 to 95 only, so 96 is rejected), multiples of 16.
SIZE_RETRY_SAMPLES = ((512, 576), (2048, 2112), (64, 80))


def with_sample_retries(signal: DynamicShapeModel, lower: Lowering) -> tuple:
    """The first sample plan that gives a dynamic model (see ``SIZE_RETRY_SAMPLES``);
    ``signal`` is updated to it (the report lists the samples used). Retried when the
    declared samples are rejected, or give graphs that differ between sizes (a decision a
    small size changes, e.g. a pool over a 1x1 map). When none works: the declared samples'
    refusal, or if the model rejected them, the first refusal at accepted sizes."""
    first, accepted, accepted_plan = None, None, None
    for plan, whole in _sample_plans(signal):
        if isinstance(first, Inexpressible) and not whole:
            continue
        if getattr(plan, "single_batch", False) and not _model_rejected(first):
            continue  # only when the model itself refused other batches, not our lowering
        try:
            result, plan = _widening(plan, lower)
            result, plan = _below_clips(result, plan, lower)
        except DynamicShapeModel:
            raise  # data-dependent sizes: handled by the caller
        except Exception as err:
            if first is None:
                if not isinstance(err, (SampleRejected, Inexpressible)):
                    raise  # the declared samples were accepted: this is the answer
                first = err
            elif isinstance(err, (Inexpressible, UnsupportedError)) and accepted is None:
                accepted, accepted_plan = err, plan  # samples accepted, graphs not comparable
            # else a failure only at retried sizes: the declared samples' answer stands
            continue
        if plan is not signal:
            fixed = [s for s in signal.symbols if not _still_dynamic(s, plan)]
            joined = [s for s in signal.symbols if s.name in getattr(plan, "merged", ())]
            if len(joined) > 1 and getattr(result[0], "report", None) is not None:
                result[0].report.warn(
                    f"dynamic shape: the model rejects different sizes for the batch dims "
                    f"{', '.join(f'{n}[{a}]' for s in joined for n, a in s.occurrences)}: the "
                    "file takes them as one batch (feed every input at the same batch)"
                )
            summed = getattr(plan, "summed", None)
            if summed and getattr(result[0], "report", None) is not None:
                total, (a, b) = summed
                result[0].report.warn(
                    f"dynamic shape: the model rejects independent sizes for {total.name} "
                    f"({describe([total])}) and accepts {total.name} = {a} + {b}: the file "
                    f"takes it so (feed {describe([total])} at {a} + {b}, as the model needs)"
                )
            if fixed and getattr(result[0], "report", None) is not None:
                result[0].report.warn(
                    f"dynamic shape: the model rejects every batch size tried but 1 "
                    f"({describe(fixed)}); it is converted with a batch of 1"
                )
            signal.symbols[:] = plan.symbols
            signal.input_dims.clear()
            signal.input_dims.update(plan.input_dims)
        return result
    if not isinstance(first, SampleRejected):
        raise first
    if accepted is None and isinstance(first.error, errors.ConversionError):
        raise first.error.reworded(
            f"{first.error.message} (at every sample size tried for the dynamic dims "
            f"{describe(signal.symbols)}); {PIN_HINT}"
        )
    if accepted is None:
        raise first.error
    raise _at_retried_sizes(accepted, accepted_plan, first)


# Wider steps tried when a strided window's output size comes out the same at both samples
# (each is a full lowering per symbol; a deeper window may collapse at the wider step).
WIDENINGS = 4


def _widening(plan: DynamicShapeModel, lower: Lowering) -> tuple:
    """(result, plan used): ``lower_and_compare`` at ``plan``; when a strided window's output
    size is the same at both samples (``FixedBySamples``: silero VAD's encoder at 512 and 576
    samples), its symbol is sampled a step apart that moves the window's input by a whole
    stride, above the first sample or else below it, until every such size differs: it is
    then dynamic and LiteRT computes it at run time. When the model itself rejects the sizes
    on both sides (its shape inference fails: a squeeze of a one-frame axis), that size does
    not vary at any size the model takes: the lowering stands, with a warning. Anything else is refused
    (``Inexpressible`` naming the window and the dims): the file would be wrong at the sizes
    that change it."""
    try:
        return lower_and_compare(plan, lower), plan
    except FixedBySamples as err:
        fixed = first = err
    start = plan
    for _ in range(WIDENINGS):
        tried = [_wider(plan, fixed, shift) for shift in (0, 1, -1)]
        failure = None
        for other in tried:
            if other is None:
                continue
            try:
                return lower_and_compare(other, lower), other
            except FixedBySamples as err:  # a deeper window: widen from there
                plan, fixed = other, err
                break
            except (SampleRejected, Inexpressible, UnsupportedError) as err:
                if not _model_rejected(err) and failure is None:
                    # accepted by the model (an empty tensor our lowering refuses is no proof
                    # that the model rejects that size: PP-OCR's height pool at 16 pixels)
                    failure = other, err
        else:
            if failure is not None:
                raise _unresolved(fixed, *failure) from None
            _warn_model_fixed(fixed, tried)  # every size that changes it is rejected
            if _same_windows(fixed, first):  # the first samples then (inside the range)
                return first.result, start
            return fixed.result, plan
    raise _unresolved(fixed, plan, None)


# Steps a sample below a clip is rounded down to (multiples of 32 keep strided backbones
# exact, as the declared samples do), the largest first.
CLIP_STEPS = (32, 16, 8, 1)


# Where below a clip its symbol is sampled, as fractions of the size where the input reaches
# it: just below first, then half way (a window whose output the step just below leaves equal:
# stride 50 after x[..., :100] gives 2 windows at 96 and at 100, 1 at 48).
CLIP_FRACTIONS = (1.0, 0.5)


def _below_clips(result: tuple, plan: DynamicShapeModel, lower: Lowering) -> tuple:
    """(result, plan): when a slice's constant end cut a dynamic axis at both samples
    (``dynamic_compare._clipped_by_samples``: x[..., :100] sampled at 512 and 576), the
    length after it came out fixed, wrong at run-time sizes below the clip. Its symbol is
    sampled again on both sides of the clip (below it, ``CLIP_FRACTIONS``, and at its first
    sample): the length then differs between the samples and stays a run-time value
    (STRIDED_SLICE clamps the end at run time, what follows takes its size from it), exact
    on both sides. Tried quietly (nothing reaches the report); kept only when it compares
    with no clip left, then lowered again for the report. Otherwise the first plan stands,
    with its warning."""
    clips = getattr(result[0], "clipped", None)
    for fraction in CLIP_FRACTIONS if clips else ():
        other = _straddling(plan, clips, fraction)
        if other is None:
            continue
        found = _straddle(other, result, lower)
        if found is not None:
            return found
    return result, plan


def _straddling(plan: DynamicShapeModel, clips: dict, fraction: float):
    """``plan`` with each clipped symbol sampled below its clip and at its first sample."""
    symbols = []
    for s in plan.symbols:
        if s.name in clips:
            below = _below(clips[s.name] * fraction)
            if below is None or below >= s.samples[0]:
                return None
            s = Symbol(s.name, s.occurrences, (below, s.samples[0]))
        symbols.append(s)
    return _carry(DynamicShapeModel(symbols, dict(plan.input_dims), dict(plan.output_dims)), plan)


def _straddle(other: DynamicShapeModel, result: tuple, lower: Lowering) -> tuple | None:
    """(result, plan) at the straddling plan ``other`` when it compares with no clip left
    (tried quietly first), else None."""

    def quiet(shapes, probe_shapes, is_base):
        return lower(shapes, probe_shapes, False)  # (a scratch report for every lowering)

    def compare(low) -> tuple:
        try:
            return lower_and_compare(other, low), other
        except FixedBySamples as err:
            if all(_one_window_below_a_clip(w, result[1]) for w in err.windows):
                return err.result, other
            return _widening(other, low)

    try:
        trial, _ = compare(quiet)
        if getattr(trial[0], "clipped", None):
            return None
        return compare(lower)
    except DynamicShapeModel:
        raise  # data-dependent sizes: handled by the caller
    except Exception:  # noqa: BLE001 - any failure at the new sizes: the first plan stands
        return None


def _one_window_below_a_clip(window, kept) -> bool:
    """Is ``window`` (its output size equal at the samples on both sides of a clip) one
    window at every size? Its output is 1 at both samples, and its input is fixed in the
    first plan's file ``kept`` (it follows the clipped length, which no larger input
    changes): a window's output grows with its input and is at least 1 wherever the model
    runs, so it is 1 from the size below the clip up (a stride-128 window after
    x[..., :100]). A window whose input grows past the clip is left to the widening."""
    if window.out != 1:
        return False
    opcode = window.where.split(" ", 1)[0]
    for sub in kept.subgraphs:
        for op in sub.operators:
            if op.opcode != opcode or op.onnx_node != window.node or not op.inputs:
                continue
            signature = op.inputs[0].shape_signature
            if signature and len(signature) > window.axis and signature[window.axis] == -1:
                return False
    return True


def _below(least: float) -> int | None:
    """The largest size below ``least`` that is a multiple of the largest ``CLIP_STEPS``
    step that has one (None below 1)."""
    for step in CLIP_STEPS:
        size = step * (-int(-least // step) - 1)
        if size >= max(step, 1) and size < least:
            return size
    return None


def _wider(plan: DynamicShapeModel, fixed: FixedBySamples, shift: int) -> DynamicShapeModel | None:
    """``plan`` with each symbol of a fixed window sampled a step apart that moves every such
    window's input by a whole stride (a multiple of the plan's own step, so that sizes stay
    multiples of what they were): from its first sample up (``shift`` 0), one step higher
    (1: a window's output of 1 at the first sample changes decisions, e.g. a transpose that
    moves only a unit axis is a reshape) or down to it (-1); None when a size would not be
    positive."""
    steps: dict[str, int] = {}
    for w in fixed.windows:
        steps[w.symbol] = max(steps.get(w.symbol, 0), w.step)
    symbols = []
    for s in plan.symbols:
        if s.name in steps:
            lo, hi = s.samples
            gap = hi - lo
            step = -(-steps[s.name] // gap) * gap
            base = lo + shift * step
            if base < 1:
                return None
            s = Symbol(s.name, s.occurrences, (base, base + step))
        symbols.append(s)
    return _carry(DynamicShapeModel(symbols, dict(plan.input_dims), dict(plan.output_dims)), plan)


def _same_windows(a: FixedBySamples, b: FixedBySamples) -> bool:
    def key(f: FixedBySamples) -> set:
        return {(w.where, w.axis, w.symbol, w.out) for w in f.windows}

    return key(a) == key(b)


def _samples(plan: DynamicShapeModel, fixed: FixedBySamples) -> str:
    names = {w.symbol for w in fixed.windows}
    return ", ".join(
        f"{s.name}={s.samples[0]} and {s.samples[1]}" for s in plan.symbols if s.name in names
    )


def _unresolved(fixed: FixedBySamples, tried: DynamicShapeModel, err) -> Inexpressible:
    """The refusal when no wider step makes the windows' output sizes differ, naming the
    windows first (a refusal at retried sizes keeps only its first 400 characters)."""
    if err is None:
        tail = "still leave a window's output size equal"
    else:
        tail = f"fail: {_short(str(getattr(err, 'message', err)), 200)}"
    return Inexpressible(f"{fixed}; the wider samples {_samples(tried, fixed)} {tail}", fixed.node)


def _warn_model_fixed(fixed: FixedBySamples, tried) -> None:
    report = getattr(fixed.result[0], "report", None)
    if report is None:
        return
    sizes = "; ".join(_samples(t, fixed) for t in tried if t is not None)
    for w in fixed.windows:
        report.warn(
            f"dynamic shape: {w.describe()}; the model rejects the sizes that change it "
            f"({sizes}): that size is fixed in the file as the model fixes it"
        )


def _at_retried_sizes(err: Exception, plan: DynamicShapeModel, first: SampleRejected):
    """The refusal at sizes the converter chose (the declared samples were rejected), saying
    which: "cannot be computed at these input shapes" must not read as the user's shapes."""
    sizes = ", ".join(f"{s.name}={s.samples[0]}" for s in plan.symbols)
    why = _short(str(getattr(first.error, "message", first.error)))
    where = f"at the retried sample sizes {sizes}; the declared ones were rejected: {why}"
    if isinstance(err, errors.ConversionError):
        return err.reworded(f"{_short(err.message)} ({where}); {PIN_HINT}")
    return Inexpressible(f"{_short(str(err))} ({where})", getattr(err, "node", None))


def _short(message: str, limit: int = 400) -> str:
    """A message cut after ``limit`` characters (ONNX's inference errors cascade for pages)."""
    return message if len(message) <= limit else message[:limit].rstrip() + " ..."


def _sample_plans(signal: DynamicShapeModel):
    """The declared samples; then the batch symbols merged into one; then each size symbol
    alone, and all of them, at each of ``SIZE_RETRY_SAMPLES``. Each plan comes with whether
    it changes every symbol it may (only those are tried when the declared samples were
    accepted but gave differing graphs: each plan is a full lowering)."""
    yield signal, True
    merged = _merged(signal)
    if merged is not None:
        yield merged, True
    sizes = [s.name for s in signal.symbols if _scalable(s)]
    groups = [{name} for name in sizes] + ([set(sizes)] if len(sizes) > 1 else [])
    for samples in SIZE_RETRY_SAMPLES:
        for group in groups:
            yield _resampled(merged or signal, samples, group), len(group) == len(sizes)
    for summed in _summed(merged or signal):  # only when no independent sizes are taken
        yield summed, False
    single = _single_batch(merged or signal)
    if single is not None:  # an exporter baked batch 1 into a Reshape: the model takes no other
        single.single_batch = True
        yield single, False


def _still_dynamic(s: Symbol, plan: DynamicShapeModel) -> bool:
    """Is some dim of symbol ``s`` still dynamic in ``plan`` (its own or a merged symbol, or
    a sum of symbols), rather than fixed at a size?"""
    kept = {p for t in plan.symbols for p in t.occurrences}
    if kept.intersection(s.occurrences):
        return True
    for name, axis in s.occurrences:
        dims = plan.input_dims.get(name)
        if dims is not None and axis < len(dims) and isinstance(dims[axis], str):
            return True
    return False


# At most this many sum relations are tried (one size symbol as the sum of two others: 3 with
# three size symbols, 12 with four): each rejected one costs a front-end run, each accepted
# one that does not compare a lowering per symbol.
MAX_SUM_PLANS = 12


def _summed(signal: DynamicShapeModel):
    """Plans in which one size symbol is the sum of two others (``total = past + sequence``:
    a decoder's attention mask spans its cache and the new tokens, and the model adds them
    elementwise), tried only after every plan with independent sizes was rejected: sampled
    independently, such a model rejects every sample. The relation is read off the model by
    its acceptance: a plan counts only if the model accepts its samples and the graphs
    compare at them; the file then takes that dim as the sum (warned)."""
    sizes = [s for s in signal.symbols if _scalable(s)]
    if len(sizes) * (len(sizes) - 1) * (len(sizes) - 2) // 2 > MAX_SUM_PLANS:
        return
    for total in sizes:
        others = [s for s in sizes if s is not total]
        for i, a in enumerate(others):
            for b in others[i + 1 :]:
                dims = {
                    k: [f"{a.name}+{b.name}" if d == total.name else d for d in v]
                    for k, v in signal.input_dims.items()
                }
                symbols = [s for s in signal.symbols if s is not total]
                plan = _carry(DynamicShapeModel(symbols, dims, dict(signal.output_dims)), signal)
                plan.summed = (total, (a.name, b.name))
                yield plan


def _model_rejected(first) -> bool:
    """Did the model itself (shape inference, a Reshape's element count) reject the declared
    samples, rather than a lowering refusing them?"""
    return isinstance(first, SampleRejected) and isinstance(first.error, Inexpressible)


def _single_batch(signal: DynamicShapeModel) -> DynamicShapeModel | None:
    """The batch symbols fixed at 1 (the report then shows a static batch of 1), the other
    symbols still sampled; None when there is no batch symbol."""
    batch = {s.name for s in signal.symbols if not s.data_dependent and s.samples == BATCH_SAMPLES}
    if not batch:
        return None
    dims = {k: [1 if d in batch else d for d in v] for k, v in signal.input_dims.items()}
    symbols = [s for s in signal.symbols if s.name not in batch]
    return DynamicShapeModel(symbols, dims, dict(signal.output_dims))


def _scalable(s: Symbol) -> bool:
    return not s.data_dependent and s.samples != BATCH_SAMPLES


def _merged(signal: DynamicShapeModel) -> DynamicShapeModel | None:
    """The batch symbols (leading dims only) as one symbol named by the first; None when
    there are fewer than two."""
    group = [s for s in signal.symbols if not s.data_dependent and s.samples == BATCH_SAMPLES]
    if len(group) < 2:
        return None
    rename = {t.name: group[0].name for t in group}
    places = tuple(p for t in group for p in t.occurrences)
    symbols = [
        Symbol(s.name, places, s.samples) if s is group[0] else s
        for s in signal.symbols
        if s.name not in rename or s is group[0]
    ]
    dims = {
        k: [rename.get(d, d) if isinstance(d, str) else d for d in v]
        for k, v in signal.input_dims.items()
    }
    plan = DynamicShapeModel(symbols, dims, dict(signal.output_dims))
    plan.merged = tuple(rename)
    return plan


def _resampled(signal: DynamicShapeModel, samples: tuple[int, int], names: set[str]):
    symbols = [
        Symbol(s.name, s.occurrences, samples) if s.name in names else s for s in signal.symbols
    ]
    return _carry(
        DynamicShapeModel(symbols, dict(signal.input_dims), dict(signal.output_dims)), signal
    )


def _carry(plan: DynamicShapeModel, source: DynamicShapeModel) -> DynamicShapeModel:
    """``plan`` (resampled from ``source``) keeps what ``source`` assumed of the model, for
    the warnings: batch symbols merged, a dim taken as a sum."""
    plan.merged = getattr(source, "merged", ())
    plan.summed = getattr(source, "summed", None)
    return plan
