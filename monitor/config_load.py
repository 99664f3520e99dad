"""Loading the config a command runs on, and the cache that spares an unchanged one.

``load_config`` is the way in: it finds and reads the file, and returns the
``RunConfig`` (``monitor.run_config``) that ``monitor.config_file`` validates it into.
Validation means YAML and pydantic, about a quarter of the start-up of a short run
(``feed-monitor once`` from cron); so the result is also written to a cache file, and a
later load whose inputs are all the same reads it back instead (msgspec, a millisecond).

The inputs, hashed into the cache key: the file's bytes and the path it was named by;
the values of every ``${VAR}`` and ``${credential:NAME}`` the file names; the home
directory (``database: ~/...``); how it is loaded (``check_notify``, ``need_targets``);
and the program itself (the modification times and sizes of its modules, and of the
site-packages directory, which changes whenever a package is installed or upgraded).
A cache file that does not match, cannot be read or is damaged is ignored; one that
cannot be written is skipped. Only a config that validated is cached: every problem is
reported from the file, every time.

Secrets stay out of the cache file: the values filled in from the environment or from
credentials are stored as markers and filled in again on reading (the key proves they
are the same values). A config whose secrets validation changed (a lowercased host, say)
is not cached. The key mixes a random salt with the secrets, so it tells nothing about
them. Cache files live in ``$CACHE_DIRECTORY`` (systemd's ``CacheDirectory=``), else
``$XDG_CACHE_HOME/feed-monitor``, else ``~/.cache/feed-monitor``, readable by the
owner only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from monitor import __version__
from monitor.errors import ConfigError
from monitor.redact import remember_credentials, remember_secret
from monitor.run_config import RunConfig, from_document, to_document

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("config/monitor.yaml")
CONFIG_ENV_VAR = "FEED_MONITOR_CONFIG"
MAX_CONFIG_BYTES = 16 * 2**20  # a config of 100,000 feeds is about 6 MB
# ${VAR}: an environment variable; ${credential:NAME}: a systemd credential (LoadCredential=)
ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|credential:[A-Za-z0-9_.@-]+)\}")
_CACHE_FORMAT = 1
_MARKER_RE = re.compile("\x00([0-9]+)\x00")  # a secret's place in a cached string


def resolve_config_path(path: str | Path | None) -> Path:
    """``--config``, else ``$FEED_MONITOR_CONFIG``, else ``config/monitor.yaml``."""
    if path:
        return Path(path)
    if env := os.environ.get(CONFIG_ENV_VAR):
        return Path(env)
    return DEFAULT_CONFIG_PATH


def read_at_most(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``limit`` (a file the user names
    may be /dev/zero, which never ends)."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    return None if len(data) > limit else data


def secret_value(name: str, environ: dict[str, str]) -> str | None:
    """An environment variable's value, or a systemd credential's (without its newline)."""
    if not name.startswith("credential:"):
        return environ.get(name)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    try:
        return (Path(directory) / name.removeprefix("credential:")).read_text().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def load_config(
    path: str | Path,
    environ: dict[str, str] | None = None,
    *,
    check_notify: bool = True,
    need_targets: bool = True,
) -> RunConfig:
    """The config in ``path``, validated, or ``ConfigError`` listing every problem.

    ``check_notify=False`` leaves asking Apprise about the notify URLs to
    ``check_notify_urls``, for a run that may have nothing to send.

    ``need_targets=False`` is for commands that send nothing (status, search, alerts...):
    the notify URLs are left as written, ``${VAR}`` and all, so their secrets need not be
    set (nor systemd credentials be readable). Such a config cannot deliver:
    ``RunConfig.targets_ready`` is False and ``delivery_policy`` refuses.
    """
    path = Path(path)
    environ = dict(os.environ) if environ is None else environ
    try:
        raw = read_at_most(path, MAX_CONFIG_BYTES)
    except OSError:
        raw = None  # validation reads it again, and says what is wrong
    cache = None if raw is None else _Cache(path, raw, environ, check_notify, need_targets)
    if cache is not None and (cached := cache.read()) is not None:
        return cached

    from monitor.config_file import notify_lines, validate_config  # pydantic, YAML: 0.15 s

    config = validate_config(
        path, environ, check_notify=check_notify, need_targets=need_targets, raw=raw
    )
    from monitor.run_config import from_config

    run = from_config(config, target_lines=notify_lines(config))
    if cache is not None:
        cache.write(run, config.secret_names)
    return run


def check_notify_urls(config: RunConfig) -> None:
    """Raise ``ConfigError`` for notify URLs Apprise cannot use (see ``load_config``)."""
    from monitor.alert import notify_url_problem

    problems = [
        f"{config.path}:{target.line or 1}: notify[{index}].url: {problem}"
        for index, target in enumerate(config.notify)
        if (problem := notify_url_problem(target.url))
    ]
    if problems:
        raise ConfigError(problems)


def cache_directory(environ: dict[str, str]) -> Path | None:
    """Where cached configs are kept (see the module's docstring), or None if nowhere."""
    if systemd := environ.get("CACHE_DIRECTORY"):
        return Path(systemd.split(":")[0])
    if xdg := environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "feed-monitor"
    if home := environ.get("HOME"):
        return Path(home) / ".cache" / "feed-monitor"
    return None


def _program_fingerprint() -> list[Any]:
    """What identifies this program and the packages it runs with, cheaply: a changed
    module or an installed package changes it."""
    here = Path(__file__).parent
    modules = sorted(
        (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
        for entry in os.scandir(here)
        if entry.name.endswith((".py", ".json"))
    )
    site_packages = Path(msgspec.__file__).parent.parent
    return [__version__, str(here), modules, site_packages.stat().st_mtime_ns]


class _Cache:
    """The cache file of one config file, and the key of one load of it."""

    def __init__(
        self,
        path: Path,
        raw: bytes,
        environ: dict[str, str],
        check_notify: bool,
        need_targets: bool,
    ) -> None:
        directory = cache_directory(environ)
        where = str(path.absolute()).encode("utf-8", "surrogateescape")
        self.file = (
            None
            if directory is None
            # One file for each way of loading it (``once`` and ``status`` take turns).
            else directory / f"config-{hashlib.sha256(where).hexdigest()[:20]}"
            f"-{int(check_notify)}{int(need_targets)}.json"
        )
        text = raw.decode("utf-8", "replace")
        names = sorted({m.group(1) for m in ENV_RE.finditer(text)})
        self.values = {name: secret_value(name, environ) for name in names}
        self._material = json.dumps(
            [_CACHE_FORMAT, _program_fingerprint(), str(path), os.path.expanduser("~"),
             check_notify, need_targets, hashlib.sha256(raw).hexdigest(),
             sorted(self.values.items())],
            default=str,
        ).encode("utf-8", "surrogateescape")  # fmt: skip

    def _key(self, salt: str) -> str:
        return hashlib.sha256(salt.encode() + self._material).hexdigest()

    def read(self) -> RunConfig | None:
        if self.file is None:
            return None
        try:
            stored = msgspec.json.decode(self.file.read_bytes(), type=_Stored)
            if stored.key != self._key(stored.salt):
                return None
            secrets_in = [self.values.get(name) or "" for name in stored.secrets]
            config = from_document(_walk_strings(stored.config, _unmarker(secrets_in)))
        except (OSError, msgspec.MsgspecError, IndexError, ValueError) as exc:
            log.debug("config cache %s not used: %s", self.file, exc)
            return None
        # What validation remembers as secrets, remembered again (monitor.redact).
        for value in secrets_in:
            remember_secret(value)
        for feed in config.feeds:
            remember_credentials(feed.url)
        for target in config.notify:
            remember_credentials(target.url, target=True)
        return config

    def write(self, config: RunConfig, secret_names: frozenset[str]) -> None:
        """Cache ``config``, whose strings hold the values of ``secret_names``."""
        if self.file is None:
            return
        names = sorted(name for name in secret_names if self.values.get(name))
        values = [self.values[name] or "" for name in names]
        # Plain JSON types only (no tuples), so that every string below is seen.
        document = msgspec.json.decode(msgspec.json.encode(to_document(config)))
        if values:
            if _any_string(document, lambda s: "\x00" in s):
                return  # a marker could not be told from the text

            # Each secret must be found as it was given, and nowhere else in another
            # spelling: else validation changed it (parsed it, lowercased it) and the
            # cache would hold what the markers do not hide.
            def kept(value: str) -> bool:
                return _any_string(document, lambda s: value in s)

            if not all(map(kept, values)):
                log.debug("config not cached: a secret is not kept as given")
                return
            number = {value: n for n, value in enumerate(values)}
            pattern = re.compile("|".join(map(re.escape, sorted(number, key=len, reverse=True))))
            document = _walk_strings(
                document, lambda s: pattern.sub(lambda m: f"\x00{number[m.group()]}\x00", s)
            )
            variants = {v for value in values for v in (value, value.lower(), value.upper())}
            if _any_string(document, lambda s: any(v in s for v in variants)):
                log.debug("config not cached: a secret is not kept as given")
                return
        salt = secrets.token_hex(16)
        data = msgspec.json.encode(_Stored(self._key(salt), salt, names, document))
        try:
            self.file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = self.file.with_name(f"{self.file.name}.{secrets.token_hex(4)}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, self.file)
            _prune(self.file.parent)
        except OSError as exc:
            log.debug("config not cached in %s: %s", self.file, exc)


STALE_AFTER = 30 * 86400  # a cache file not written for this long is deleted


def _prune(directory: Path) -> None:
    """Delete cache files of configs not loaded for a month (a config moved or deleted
    leaves its file behind; one still in use is written again on its next load)."""
    now = time.time()
    for entry in os.scandir(directory):
        if entry.name.startswith("config-") and ".json" in entry.name:
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > STALE_AFTER:
                    os.unlink(entry.path)


class _Stored(msgspec.Struct):
    key: str
    salt: str
    secrets: list[str]  # the names of the secrets the config holds; marker n is the n-th
    config: Any  # a RunConfig as JSON, secrets replaced by markers


def _unmarker(values: list[str]) -> Callable[[str], str]:
    def fill(text: str) -> str:
        return _MARKER_RE.sub(lambda m: values[int(m.group(1))], text) if "\x00" in text else text

    return fill


def _walk_strings(node: Any, change: Callable[[str], str]) -> Any:
    if isinstance(node, str):
        return change(node)
    if isinstance(node, list | tuple):
        return [_walk_strings(item, change) for item in node]
    if isinstance(node, dict):
        return {change(k): _walk_strings(v, change) for k, v in node.items()}
    return node


def _any_string(node: Any, test: Callable[[str], bool]) -> bool:
    if isinstance(node, str):
        return test(node)
    if isinstance(node, list | tuple):
        return any(_any_string(item, test) for item in node)
    if isinstance(node, dict):
        return any(test(k) or _any_string(v, test) for k, v in node.items())
    return False
