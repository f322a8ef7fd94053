"""Text a person or script typed, made safe to store and show: one rule for every name, tag,
note and file name.

What goes is every character that is not text one can see or that changes how the text around it
reads: control characters (Cc), format characters (Cf: the bidi overrides and isolates that make
``\\u202egpj.exe`` show as ``exe.jpg``, zero-width spaces and joiners, the word joiner, the byte
order mark, the soft hyphen), lone surrogates (Cs), private-use (Co) and unassigned (Cn) code
points, and the line and paragraph separators (Zl, Zp). The rest is NFC-normalised (after the
removal, so that no character left out splits a letter from its accent), so the same word typed
on two systems is the same tag.

One price: a ZERO WIDTH JOINER is a format character, so an emoji sequence joined by it (a family,
a flag with a modifier) is stored as its separate emoji.
"""

from __future__ import annotations

import unicodedata

REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def clean_text(raw: str, keep: str = "") -> str:
    """``raw`` NFC-normalised, without the characters of ``REMOVED_CATEGORIES`` except those in
    ``keep`` (say ``"\\n\\t"`` for a note). Linear in the length of ``raw``."""
    kept = "".join(c for c in raw if c in keep or unicodedata.category(c) not in REMOVED_CATEGORIES)
    return unicodedata.normalize("NFC", kept)


def one_line(raw: str) -> str:
    """``clean_text`` with every run of white space (tabs and newlines too) made one space, trimmed:
    a name or a tag."""
    return " ".join(clean_text(raw, keep="\t\n\r").split())
