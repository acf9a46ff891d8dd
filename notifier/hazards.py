"""The hazards a shelter is designated for, as the national open-data format names them
(デジタル庁「自治体標準オープンデータセット」指定緊急避難場所一覧: 災害種別_…), and what an
alert is for."""

from __future__ import annotations

from typing import Literal

Hazard = Literal[
    "flood",
    "landslide",
    "storm_surge",
    "earthquake",
    "tsunami",
    "fire",
    "inland_flood",
    "volcano",
]

# code → the dataset's column suffix (災害種別_洪水 …), which is also the name residents read
HAZARDS: dict[str, str] = {
    "flood": "洪水",
    "landslide": "崖崩れ、土石流及び地滑り",
    "storm_surge": "高潮",
    "earthquake": "地震",
    "tsunami": "津波",
    "fire": "大規模な火事",
    "inland_flood": "内水氾濫",
    "volcano": "火山現象",
}
