"""Settings: the TOML file, the environment over it, and the ward's data."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from notifier.config import Ward, load_settings


def test_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFIER_HTTP_PORT", "9090")
    monkeypatch.setenv("NOTIFIER_PUBLIC_URL", "https://notices.example.jp/")
    settings = load_settings()
    assert settings.http_port == 9090
    assert settings.public_url == "https://notices.example.jp"
    assert settings.ward.area_codes == ["nerima", "hikarigaoka", "shakujii", "oizumi"]
    assert settings.ward.topic_codes[0] == "disaster"
    assert settings.ward.language_codes == ["ja", "easy", "en", "zh", "ko"]


def test_channels_without_credentials_are_in_outbox_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert not settings.live("line")
    assert settings.missing_credentials("line") == [
        "NOTIFIER_LINE_CHANNEL_ACCESS_TOKEN",
        "NOTIFIER_LINE_CHANNEL_SECRET",
    ]
    monkeypatch.setenv("NOTIFIER_LINE_CHANNEL_ACCESS_TOKEN", "very-secret-token")
    monkeypatch.setenv("NOTIFIER_LINE_CHANNEL_SECRET", "another-secret")
    settings = load_settings()
    assert settings.live("line")
    assert "very-secret-token" not in repr(settings)


def test_bad_ward_data_is_refused() -> None:
    nerima = {"code": "nerima", "name": "練馬"}
    with pytest.raises(ValidationError, match="code twice"):
        load_settings(
            ward={
                "areas": [nerima, nerima],
                "topics": [nerima],
                "languages": [{"code": "ja", "name": "日本語"}],
            }
        )
    with pytest.raises(ValidationError, match="must include ja"):
        load_settings(
            ward={
                "areas": [nerima],
                "topics": [nerima],
                "languages": [{"code": "en", "name": "English"}],
            }
        )
    with pytest.raises(ValidationError, match="unknown time zone"):
        load_settings(timezone="Mars/Olympus")


def test_a_name_in_a_language_the_ward_does_not_offer_is_refused() -> None:
    ward = load_settings().ward.model_dump()
    ward["areas"][0]["names"] = {"fr": "Nérima"}
    with pytest.raises(ValueError, match="names in fr: not a language of ward"):
        Ward.model_validate(ward)


def test_names_read_in_each_language_with_english_for_other_readers() -> None:
    ward = load_settings().ward
    oizumi = ward.area("oizumi")
    assert [oizumi.label(lang) for lang in ("ja", "easy", "en", "zh", "ko")] == [
        "大泉",
        "おおいずみ（大泉）",
        "Oizumi",
        "大泉",
        "오이즈미",
    ]
    bare = oizumi.model_copy(update={"names": {}})
    assert [bare.label(lang) for lang in ("easy", "zh", "ko")] == ["大泉", "Oizumi", "Oizumi"]
    assert ward.label("ko") == "네리마구" and ward.label("en") == "Nerima City"
