"""Build output with ANSI colours as safe HTML. Pure: no I/O, no Flask.

Only SGR sequences (colours, bold, dim, italic, underline) become markup, as ``<span class=…>``
(the console's content security policy allows no inline styles); every other escape sequence
(cursor movement, titles, hyperlinks) is dropped, and all text is HTML-escaped. 256-colour and
24-bit colours are shown as the nearest of the 16 basic ones.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace

#: CSI sequences (``ESC [ … final``), OSC sequences (``ESC ] … BEL|ST``), and two-byte escapes.
#: Parameters are bounded (a longer run is no sequence, and shows as text), and an unterminated OSC ends at the line.
_ESCAPE = re.compile(r"\x1b\[([0-9;:?]{0,64})([@-~])|\x1b\][^\x07\x1b\n]{0,512}(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?")
#: The 16 basic colours as RGB, in SGR order (30–37, then 90–97), for mapping richer colours onto them.
_BASIC_RGB = (
    (0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200), (188, 63, 188), (17, 168, 205),
    (229, 229, 229), (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67), (59, 142, 234),
    (214, 112, 214), (41, 184, 219), (255, 255, 255),
)


@dataclass(frozen=True)
class Style:
    """The SGR attributes in force at some point of the output."""

    fg: int | None = None  # 0–15
    bg: int | None = None  # 0–15
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def classes(self) -> str:
        """Return the CSS classes that show this style (empty for the default)."""
        names = [f"fg{self.fg}"] if self.fg is not None else []
        names += [f"bg{self.bg}"] if self.bg is not None else []
        names += [name for name in ("bold", "dim", "italic", "underline") if getattr(self, name)]
        return " ".join(names)


def _nearest(rgb: tuple[int, int, int]) -> int:
    return min(range(16), key=lambda i: sum((a - b) ** 2 for a, b in zip(_BASIC_RGB[i], rgb, strict=True)))


def _xterm_rgb(n: int) -> tuple[int, int, int]:
    """The RGB of xterm colour ``n`` (16–255)."""
    if n >= 232:
        level = 8 + (n - 232) * 10
        return level, level, level
    n -= 16
    steps = (0, 95, 135, 175, 215, 255)
    return steps[n // 36], steps[(n // 6) % 6], steps[n % 6]


def _extended(params: list[int]) -> tuple[int | None, int]:
    """Read a 38/48 colour's arguments (``5;n`` or ``2;r;g;b``): the basic colour and how many were used."""
    if len(params) >= 2 and params[0] == 5:
        n = params[1]
        return (n if n < 16 else _nearest(_xterm_rgb(min(n, 255)))), 2
    if len(params) >= 4 and params[0] == 2:
        return _nearest((params[1], params[2], params[3])), 4
    return None, len(params)


def apply_sgr(style: Style, raw: str) -> Style:
    """Return ``style`` after an SGR sequence with parameters ``raw`` (such as ``"1;31"``)."""
    params = [int(p[:4]) if p.isdigit() else 0 for p in re.split("[;:]", raw)] if raw else [0]
    i = 0
    while i < len(params):
        code, i = params[i], i + 1
        if code == 0:
            style = Style()
        elif code in (1, 2, 3, 4):
            style = replace(style, **{("bold", "dim", "italic", "underline")[code - 1]: True})
        elif code == 22:
            style = replace(style, bold=False, dim=False)
        elif code in (23, 24):
            style = replace(style, **{"italic" if code == 23 else "underline": False})
        elif 30 <= code <= 37 or 90 <= code <= 97:
            style = replace(style, fg=code - 30 if code < 90 else code - 82)
        elif 40 <= code <= 47 or 100 <= code <= 107:
            style = replace(style, bg=code - 40 if code < 100 else code - 92)
        elif code in (39, 49):
            style = replace(style, **{"fg" if code == 39 else "bg": None})
        elif code in (38, 48):
            colour, used = _extended(params[i:])
            i += used
            if colour is not None:
                style = replace(style, **{"fg" if code == 38 else "bg": colour})
    return style


def to_html(text: str, style: Style = Style()) -> tuple[str, Style]:
    """Render ``text`` as escaped HTML starting in ``style``; return it and the style in force at its end.

    Passing the returned style to the next call keeps colours across chunks of one stream.
    """
    out: list[str] = []

    def emit(segment: str) -> None:
        if segment:
            classes = style.classes()
            escaped = html.escape(segment, quote=False)
            out.append(f'<span class="{classes}">{escaped}</span>' if classes else escaped)

    position = 0
    for match in _ESCAPE.finditer(text):
        emit(text[position:match.start()])
        position = match.end()
        if match.group(2) == "m":
            style = apply_sgr(style, match.group(1))
    emit(text[position:])
    return "".join(out), style


def strip(text: str) -> str:
    """Return ``text`` without any escape sequence."""
    return _ESCAPE.sub("", text)
