"""The portal's two languages (gateway/portal/src/locales): zh-CN and en have exactly the same keys, every value
is text, and the English one is English (no Chinese left in it, but the switch back to 中文).

The locale files are ES modules: Node (which `make portal` needs anyway) imports them and prints their keys."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

LOCALES = Path(__file__).resolve().parents[2] / "gateway" / "portal" / "src" / "locales"
SCRIPT = """
const flat = (o, p = '') => Object.entries(o).flatMap(([k, v]) =>
  v && typeof v === 'object' ? flat(v, `${p}${k}.`) : [[`${p}${k}`, v]])
const out = {}
for (const f of process.argv.slice(1)) out[f] = Object.fromEntries(flat((await import(f)).default))
console.log(JSON.stringify(out))
"""
HAN = re.compile(r"[\u4e00-\u9fff]")
CHINESE_IN_ENGLISH = {"app.language"}  # the switch names the other language in its own words


@pytest.fixture(scope="module")
def messages() -> dict[str, dict[str, object]]:
    node = shutil.which("node")
    assert node, "node not found: reading the portal's locale files needs Node.js (as `make portal` does)"
    files = [str(LOCALES / "zh-CN.js"), str(LOCALES / "en.js")]
    done = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, *files], capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(done.stdout)
    return {"zh-CN": found[files[0]], "en": found[files[1]]}


def test_zh_cn_and_en_have_the_same_keys(messages: dict[str, dict[str, object]]) -> None:
    zh, en = set(messages["zh-CN"]), set(messages["en"])
    assert sorted(zh - en) == [], "keys in zh-CN.js missing from en.js"
    assert sorted(en - zh) == [], "keys in en.js missing from zh-CN.js"
    assert len(zh) > 100  # the files were read, not two empty objects


def test_every_message_is_text(messages: dict[str, dict[str, object]]) -> None:
    for lang, found in messages.items():
        empty = [k for k, v in found.items() if not isinstance(v, str) or not v.strip()]
        assert empty == [], f"{lang}: messages that are not text"


def test_the_english_messages_are_english(messages: dict[str, dict[str, object]]) -> None:
    chinese = [k for k, v in messages["en"].items() if HAN.search(str(v)) and k not in CHINESE_IN_ENGLISH]
    assert chinese == [], "en.js messages still in Chinese"
