"""Build output's ANSI colours become classed spans; everything else is escaped text."""

import re

from webhook.ansi import Style, strip, to_html


def test_plain_text_is_escaped_and_unwrapped():
    assert to_html("<script>alert(1)</script> & done\n")[0] == "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done\n"


def test_colours_and_bold_become_classes_until_reset():
    rendered, style = to_html("\x1b[1;31merror\x1b[0m ok")
    assert rendered == '<span class="fg1 bold">error</span> ok'
    assert style == Style()


def test_bright_colours_and_backgrounds():
    assert to_html("\x1b[92;44mgo")[0] == '<span class="fg10 bg4">go</span>'


def test_a_style_carries_over_to_the_next_chunk_of_the_same_stream():
    first, style = to_html("\x1b[33mwarn")
    second, _ = to_html("ing\n", style)
    assert second == '<span class="fg3">ing\n</span>'


def test_256_and_24_bit_colours_map_to_the_nearest_basic_colour():
    assert to_html("\x1b[38;5;9mx")[0] == '<span class="fg9">x</span>'
    assert to_html("\x1b[38;5;196mx")[0] == '<span class="fg1">x</span>'  # xterm's pure red
    assert to_html("\x1b[38;2;0;0;0mx")[0] == '<span class="fg0">x</span>'


def test_other_escape_sequences_are_dropped_not_shown():
    text = "\x1b[2K\x1b[1Gstep\x1b]0;title\x07 \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"
    assert to_html(text)[0] == "step link"
    assert strip("\x1b[31mred\x1b[0m") == "red"


def test_a_class_name_never_comes_from_the_text():
    """Out-of-range numbers and malformed sequences change nothing an attribute could carry."""
    rendered, _ = to_html('\x1b[38;5;999m"x\x1b[38;2;999;-1mq\x1b[1;"onload=x m')
    assert set(re.findall(r"<[^>]*>", rendered)) == {'<span class="fg7">', "</span>"}
