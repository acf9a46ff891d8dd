"""警戒レベル: the five levels residents are taught to act on (Cabinet Office guideline, 2021).

Levels 3–5 are evacuation information the ward issues (避難情報); 1–2 are the JMA's and go out
as information. Each level has its standard name, the action residents take, and its colour
(the guideline's: 5 black, 4 purple, 3 red, 2 yellow, 1 white, in the JMA's shades).
"""

from __future__ import annotations

from dataclasses import dataclass

from notifier.i18n import N_


@dataclass(frozen=True)
class Level:
    number: int
    name: str  # the standard name: 避難指示
    action: str  # what residents do: 危険な場所から全員避難
    colour: str  # the band's colour
    ink: str  # the colour of text on it
    issued_by_ward: bool  # 3–5: 避難情報 the ward issues; 1–2: the JMA's information

    @property
    def mark(self) -> str:
        """How every channel opens: 【警戒レベル4】避難指示."""
        return f"【警戒レベル{self.number}】{self.name}"


LEVELS: dict[int, Level] = {
    5: Level(5, N_("緊急安全確保"), N_("命の危険 直ちに安全確保！"), "#0C000C", "#FFFFFF", True),
    4: Level(4, N_("避難指示"), N_("危険な場所から全員避難"), "#AA00AA", "#FFFFFF", True),
    3: Level(3, N_("高齢者等避難"), N_("危険な場所から高齢者等は避難"), "#FF2800", "#FFFFFF", True),
    2: Level(2, N_("注意報"), N_("自らの避難行動を確認"), "#F2E700", "#000000", False),
    1: Level(1, N_("早期注意情報"), N_("災害への心構えを高める"), "#FFFFFF", "#000000", False),
}


def severity_of(level: int) -> str:
    """The CAP-style severity a level stands for, where the desk gives only the level."""
    return "emergency" if level >= 4 else "warning" if level == 3 else "advisory"
