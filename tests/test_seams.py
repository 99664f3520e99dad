"""The seams between modules that the layout promises (README, "Layout")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from monitor.store import Store
from monitor.store.schema import pending


def test_matching_needs_neither_the_config_models_nor_pydantic() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, monitor.match; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "monitor.match" in loaded
    assert "monitor.config" not in loaded
    assert not [name for name in loaded if name.split(".")[0] == "pydantic"]


def test_an_up_to_date_database_opens_without_sqlite_utils(tmp_path: Path) -> None:
    """sqlite-utils runs the migrations; every other open is plain sqlite3 (start-up time)."""
    script = (
        "import sys; from pathlib import Path; from monitor.store import Store\n"
        "Store.open(Path(sys.argv[1])).close()\n"
        "print(' '.join(sys.modules))"
    )
    database = str(tmp_path / "monitor.db")
    first = subprocess.run([sys.executable, "-c", script, database],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    again = subprocess.run([sys.executable, "-c", script, database],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert "sqlite_utils" in first  # a new file: every migration ran
    assert "sqlite_utils" not in again
    with Store.open(Path(database)) as store:
        assert pending(store.db.conn) == []


def test_the_command_line_creates_no_dataclass_of_its_own() -> None:
    """Records are msgspec structs: Python 3.11 compiles every generated method of a
    dataclass from source when the class is made (~6 M instructions a class, a tenth of a
    quiet `once` for the 68 records), a struct is made in C."""
    script = (
        "import dataclasses, sys, monitor.cli, monitor.daemon, monitor.web\n"
        "for name, module in list(sys.modules.items()):\n"
        "    if name.split('.')[0] == 'monitor':\n"
        "        for value in vars(module).values():\n"
        "            if (isinstance(value, type) and dataclasses.is_dataclass(value)\n"
        "                    and value.__module__ == name):\n"
        "                print(f'{name}.{value.__name__}')\n"
    )
    found = subprocess.run([sys.executable, "-c", script],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert found == []
