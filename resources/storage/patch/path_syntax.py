"""Strict FHIRPath syntax for FHIRPath Patch paths, and the path-text steps patching needs.

fhirpathpy's parser recovers silently from syntax errors (``Patient name`` evaluates as
``Patient``), which would let a malformed patch act on the wrong element; FHIR R4 fhirpatch.html
paths are FHIRPath expressions (fhirpath.html), so each is parsed here with the same grammar,
failing on the first error. ``insert`` and ``move`` name "the collection", so their path is split
into the element holding the list and the list's name.
"""

from __future__ import annotations

import re

from antlr4 import CommonTokenStream, InputStream  # type: ignore[import-untyped]
from antlr4.error.ErrorListener import ErrorListener  # type: ignore[import-untyped]
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser


class PathSyntaxError(ValueError):
    """The ``path`` is not a FHIRPath expression."""


class _RaiseOnError(ErrorListener):
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: N802, N803
        raise PathSyntaxError(f"column {column + 1}: {msg}")


# Operator and literal keywords of the FHIRPath grammar that are also FHIR element names
# (Narrative.div) or could be; after a "." they can only be a member name.
_KEYWORDS = frozenset({"div", "mod", "and", "or", "xor", "implies", "true", "false"})
_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")


def quote_member_keywords(path: str) -> str:
    """Delimit keywords used as member names: ``Patient.text.div`` → ``Patient.text.`div```.

    The FHIRPath grammar reads ``div`` as the division operator, yet the spec's own patch
    tests write ``Patient.text.div``; after a dot the keyword can only name an element."""
    out, quote, i = [], "", 0
    while i < len(path):
        ch = path[i]
        out.append(ch)
        if quote:
            if ch == "\\" and i + 1 < len(path):
                out.append(path[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == ".":
            word = _WORD.match(path, i + 1)
            if word and word.group(1) in _KEYWORDS:
                out.append(f"`{word.group(1)}`")
                i = word.end()
                continue
        i += 1
    return "".join(out)


def check_syntax(path: str) -> None:
    """Parse ``path`` as a whole FHIRPath expression; raise ``PathSyntaxError`` if it is not."""
    lexer = FHIRPathLexer(InputStream(quote_member_keywords(path)))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_RaiseOnError())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_RaiseOnError())
    parser.entireExpression()


def split_list_path(path: str) -> tuple[str | None, str] | None:
    """Split the path of a list (``insert``/``move`` act on "the collection") into the path of
    the element that holds it and the list's name: ``Patient.name.where(use='official').given``
    → (``Patient.name.where(use='official')``, ``given``); ``identifier`` → (``None``,
    ``identifier``), ``None`` standing for the resource. ``None`` if the path does not end in an
    element name. The last step is found outside brackets, parentheses and string literals."""
    depth, quote, cut = 0, "", -1
    i = 0
    while i < len(path):
        ch = path[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "." and depth == 0:
            cut = i
        i += 1
    head, name = (path[:cut].strip(), path[cut + 1 :].strip()) if cut >= 0 else (None, path.strip())
    name = name[1:-1] if len(name) > 1 and name[0] == name[-1] == "`" else name
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name) or head == "":
        return None
    return head, name
