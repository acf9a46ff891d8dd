"""`notifier shelters import|list`, run as an operator runs them: exit 0 when imported,
1 when a line is bad (and nothing imported), 2 when the file cannot be read."""

from __future__ import annotations

from pathlib import Path

from notifier.runtime import Runtime
from notifier.shelters import ShelterStore
from tests.notifier.test_cli import env_for, notifier
from tests.notifier.test_cli_startup import HEAVY, loaded
from tests.notifier.test_shelters import HALL, PARK, SCHOOL, csv_of


async def test_import_reports_every_bad_line_and_imports_nothing(
    prefix: str, tmp_path: Path, runtime: Runtime
) -> None:
    env = env_for(prefix, tmp_path)
    store = ShelterStore(runtime.redis, runtime.keys, runtime.settings.ward)
    good = tmp_path / "shelters.csv"
    good.write_bytes(csv_of(SCHOOL, PARK).encode("cp932"))  # as many wards publish it
    done = notifier(env, "shelters", "import", str(good))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported 2 shelter(s); 0 of them open, as they were"
    assert await store.set_open("2", True)

    bad = tmp_path / "bad.csv"
    bad.write_text(csv_of(HALL, SCHOOL.replace("35.7372", "北緯35度"), PARK[:-3] + "町内"))
    done = notifier(env, "shelters", "import", str(bad))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{bad}: line 3: 緯度: not a number in degrees",
        f"{bad}: line 4: 地区: not an area of the ward (nerima, hikarigaoka, shakujii, oizumi)",
        "notifier: 2 problem(s); nothing was imported",
    ]
    assert [s.shelter.id for s in await store.all()] == ["1", "2"]  # as before

    listed = notifier(env, "shelters", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        "1\tclosed\tnerima\t練馬第一小学校\tflood,earthquake,inland_flood",
        "2\topen\thikarigaoka\t光が丘公園\tearthquake,fire",
    ]
    entries = await runtime.audit.recent()
    assert [(e["action"], e["outcome"]) for e in entries] == [("shelters.import", "ok")]

    good.write_text(csv_of(PARK, HALL), encoding="utf-8-sig")
    done = notifier(env, "shelters", "import", str(good))
    assert done.stdout.strip() == "imported 2 shelter(s); 1 of them open, as they were"


def test_a_file_that_cannot_be_read_is_exit_code_2(prefix: str, tmp_path: Path) -> None:
    env = env_for(prefix, tmp_path)
    done = notifier(env, "shelters", "import", str(tmp_path / "missing.csv"))
    assert done.returncode == 2 and "can't read" in done.stderr
    binary = tmp_path / "picture.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x82 ")
    done = notifier(env, "shelters", "import", str(binary))
    assert done.returncode == 2 and "neither UTF-8 nor Shift_JIS" in done.stderr


def test_the_shelter_commands_load_nothing_heavy(prefix: str, tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "config" / "shelters.csv"
    env = env_for(prefix, tmp_path)
    for argv in (["shelters", "import", str(sample)], ["shelters", "list"]):
        code, modules = loaded(env, *argv)
        assert code == 0
        assert "notifier.shelters" in modules
        assert sorted(m for m in HEAVY if m in modules) == []
