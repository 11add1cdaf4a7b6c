"""The key-encryption key: its format, and the development key kept in ``.local/``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from privacy import kek


def test_a_development_key_is_generated_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = kek.dev_key(tmp_path / ".local")

    assert kek.dev_key(tmp_path / ".local") == first
    assert len(kek.parse_key(first)) == kek.KEY_BYTES
    mode = (tmp_path / ".local" / kek.DEV_KEY_FILE_NAME).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert [p.name for p in (tmp_path / ".local").iterdir()] == [kek.DEV_KEY_FILE_NAME]


@pytest.mark.parametrize("text", ["", "not base64!", "c2hvcnQ=", kek.new_key() + "AAAA"])
def test_a_key_that_is_not_32_bytes_of_base64_is_refused(text: str) -> None:
    with pytest.raises(kek.InvalidKey):
        kek.parse_key(text)


def test_key_ids_name_keys_without_revealing_them() -> None:
    key = kek.new_key()

    assert kek.key_id(kek.parse_key(key)) == kek.key_id(kek.parse_key(key))
    assert kek.key_id(kek.parse_key(key)) != kek.key_id(kek.parse_key(kek.new_key()))
    assert kek.key_id(kek.parse_key(key)) not in key
