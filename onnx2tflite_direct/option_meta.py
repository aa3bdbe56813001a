"""What a conversion option looks like outside Python: :class:`Flag` (one command-line flag),
:class:`Meta` (an option's flags, group, README text, example and API spelling), the
groups the README and ``--help`` list options under (:data:`GROUPS`), and :func:`describe`,
which builds a :class:`Meta`.

Split from ``options.py`` so that the vocabulary for describing an option sits apart from the
options it describes: ``options.ConvertOptions`` carries a :class:`Meta` in each field's
metadata, and the CLI describes its own flags (``-o``, ``--validate-all-tensors`` ...) with
the same types; the parser, ``--help`` and the README's tables (``docs_gen``) read both alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Flag:
    """One command-line flag.

    ``kind``: ``switch`` (present = True), ``negate`` (present = False), ``value`` (one value),
    ``append`` (repeatable, one value each), ``list`` (one or more values after the flag),
    ``optional_list`` (like ``list``, or no value at all: the flag alone means "every one").
    ``accepts`` says whether a token after a ``list`` flag is one of its values (the CLI stops
    there, so ``--quantize fp16 model.onnx`` leaves the model path alone)."""

    names: tuple[str, ...]
    help: str
    kind: str = "value"
    metavar: str | None = None
    type: Callable[[str], object] | None = None
    choices: tuple[str, ...] | None = None
    accepts: Callable[[str], bool] | None = None

    @property
    def name(self) -> str:
        """The first long name: the one messages use."""
        return next((n for n in self.names if n.startswith("--")), self.names[0])

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    def usage(self) -> str:
        """``--flag METAVAR`` as the docs show it."""
        if self.kind in ("switch", "negate"):
            return ", ".join(self.names)
        meta = self.metavar or "|".join(self.choices or ()) or self.dest.upper()
        tail = "..." if self.kind == "list" else ""
        if self.kind == "optional_list":
            return f"{', '.join(self.names)} [{meta}...]"
        return f"{', '.join(self.names)} {meta}{tail}"


GROUPS = {
    "conversion": "Conversion",
    "layout": "Layout and graph controls",
    "quantization": "Quantized variants (written next to the float32 file)",
    "checking": "Checking the result",
}


@dataclass(frozen=True)
class Meta:
    """What one option looks like outside Python: its flags, group, README text (``doc``,
    markdown; ``--help`` shows it as plain text) and example, the API spelling used in
    messages (``api_hint``) and how flag values become the API value (``from_cli``: the
    flags' parsed values, in ``flags`` order -> the value). ``default`` is the value without
    the flag (a ConvertOptions field's own default)."""

    flags: tuple[Flag, ...]
    group: str
    doc: str
    example: str
    api_hint: str | None = None
    from_cli: Callable[..., object] | None = None
    show_default: bool = True
    default: object = None


def plain(doc: str) -> str:
    """Markdown -> the plain text ``--help`` shows: no backticks; a link to a file keeps its
    path, a link inside the README only its text."""
    doc = re.sub(r"\[([^\]]+)\]\(#[^)]+\)", r"\1", doc)
    doc = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1: \2", doc)
    return doc.replace("`", "")


def describe(
    default,
    flags,
    doc: str,
    example: str | None = None,
    *,
    group: str,
    kind: str = "value",
    metavar: str | None = None,
    helps: tuple[str, ...] | None = None,
    type=None,
    choices=None,
    accepts=None,
    api_hint=None,
    from_cli=None,
    show_default: bool | None = None,
) -> Meta:
    """An option's metadata. ``flags``: one flag's name(s) as a string or a tuple of aliases,
    or a list of flag names sharing ``kind`` and ``metavar`` (``helps`` gives each its own
    help; otherwise ``--help`` shows ``doc`` as plain text). The default is shown for options
    that take a value."""
    names = [(f,) for f in flags] if isinstance(flags, list) else [(flags,)]
    names = [n[0] if isinstance(n[0], tuple) else n for n in names]
    built = tuple(
        Flag(
            tuple(n),
            helps[i] if helps else plain(doc),
            kind,
            metavar,
            type,
            tuple(choices) if choices else None,
            accepts,
        )
        for i, n in enumerate(names)
    )
    if show_default is None:
        show_default = kind == "value" and default is not None
    return Meta(
        built, group, doc, example or names[0][-1], api_hint, from_cli, bool(show_default), default
    )
