"""Template helpers shared by the channels' templates."""

from __future__ import annotations

from notifier.render import paragraphs


def test_paragraphs_keep_the_line_breaks_the_desk_wrote_and_escape_the_text() -> None:
    body = "川の近くの方は避難してください。\n避難所：石神井東中学校\n\n<b>落ち着いて</b> & 静かに"
    assert str(paragraphs(body)) == (
        "<p>川の近くの方は避難してください。<br>避難所：石神井東中学校</p>\n"
        "<p>&lt;b&gt;落ち着いて&lt;/b&gt; &amp; 静かに</p>"
    )
