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
are the same values). A config is not cached when that cannot be done safely: a secret
validation changed (parsed, trimmed, lowercased), a placeholder YAML spelled so that
only validation sees it (``"\\x24{VAR}"``), a credential written literally in a URL.
The key is a salted hash over the secrets among the other inputs: whoever can read the
cache file could test guesses of a weak secret against it, so it is its owner's alone
(0600 in a 0700 directory), like the environment the secrets come from. A cache file
is used only if it is a regular file of this user's, in a directory no one else may
write to, and its key covers what it holds; anything else about it (damaged, a link,
too large) makes it a miss.

Cache files live in ``$CACHE_DIRECTORY`` (systemd's ``CacheDirectory=``), else
``$XDG_CACHE_HOME/feed-monitor``, else ``~/.cache/feed-monitor``; one not used for a
month is deleted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from monitor import __version__
from monitor.errors import ConfigError
from monitor.redact import (
    host_name,
    remember_config_credentials,
    remember_secret,
    secret_param_name,
)
from monitor.run_config import (
    RunConfig,
    from_config,
    from_document,
    from_json,
    to_document,
    to_json,
)

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
    """An environment variable's value, or a systemd credential's (without its newline;
    None unless it is a regular file of at most 64 KiB: never a wait on a pipe)."""
    if not name.startswith("credential:"):
        return environ.get(name)
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    try:
        data = _read_regular_file(Path(directory) / name.removeprefix("credential:"), 2**16)
        return None if data is None else data.decode("utf-8").rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def _read_regular_file(path: Path, limit: int, *, follow: bool = True) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else
    None: never a wait on a pipe, nor a read without end (a link to /dev/zero)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_size > limit:
            return None
        if not follow and status.st_uid != os.getuid():
            return None
        data = file.read(limit + 1)
    return None if len(data) > limit else data


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
    xdg = environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative path is to be ignored
        return Path(xdg) / "feed-monitor"
    if home := environ.get("HOME"):
        return Path(home) / ".cache" / "feed-monitor"
    return None


@functools.cache
def _program_fingerprint() -> list[Any]:
    """What identifies this program and the packages it runs with, cheaply: a changed
    module or an installed package changes it. Taken once a process, as it starts: a
    daemon still running the old code after an upgrade writes under the old one."""
    here = Path(__file__).parent
    modules = sorted(
        (os.path.relpath(entry.path, here), entry.stat().st_mtime_ns, entry.stat().st_size)
        for directory in (here, here / "store")
        for entry in os.scandir(directory)
        if entry.name.endswith((".py", ".json"))
    )
    site_packages = Path(msgspec.__file__).parent.parent
    return [__version__, str(here), modules, site_packages.stat().st_mtime_ns]


MAX_CACHE_BYTES = 4 * MAX_CONFIG_BYTES  # a cache file is about the size of its config


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
        # The secrets the file names as written. (YAML can spell a placeholder so that
        # this does not see it, "\x24{VAR}": validation then fills in a name not here,
        # and such a config is not cached.)
        text = raw.decode("utf-8", "replace")
        names = sorted({m.group(1) for m in ENV_RE.finditer(text)})
        self.values = {name: secret_value(name, environ) for name in names}
        self._material = json.dumps(
            [_CACHE_FORMAT, _program_fingerprint(), str(path), os.path.expanduser("~"),
             check_notify, need_targets, hashlib.sha256(raw).hexdigest(),
             sorted(self.values.items())],
            default=str,
        ).encode("utf-8", "surrogateescape")  # fmt: skip

    def _key(self, salt: str, names: list[str], document: bytes) -> str:
        key = hashlib.sha256(salt.encode() + self._material)
        key.update(json.dumps(names).encode())
        key.update(document)
        return key.hexdigest()

    def read(self) -> RunConfig | None:
        """The cached config, if the file holds one for exactly these inputs."""
        if self.file is None:
            return None
        try:
            data = _read_private_file(self.file)
            if data is None:
                return None
            stored = msgspec.json.decode(data, type=_Stored)
            document = bytes(stored.config)
            if stored.key != self._key(stored.salt, stored.secrets, document):
                return None
            secrets_in = [self.values.get(name) or "" for name in stored.secrets]
            if secrets_in:
                filled = _walk_strings(msgspec.json.decode(document), _unmarker(secrets_in))
                config = from_document(filled)
            else:
                config = from_json(document)
            if time.time() - os.stat(self.file).st_mtime > 86400:
                os.utime(self.file)  # in use: not pruned (``_prune``)
        except Exception as exc:  # whatever is wrong with it, validation is the answer
            log.debug("config cache %s not used: %s", self.file, exc)
            return None
        # What validation remembers as secrets, remembered again (monitor.redact).
        for value in secrets_in:
            remember_secret(value)
        remember_config_credentials((f.url for f in config.feeds), (t.url for t in config.notify))
        return config

    def write(self, config: RunConfig, secret_names: frozenset[str]) -> None:
        """Cache ``config``, whose strings hold the values of ``secret_names``; or do
        nothing, if it cannot be cached safely or the file cannot be written."""
        if self.file is None:
            return
        try:
            stored = self._stored(config, secret_names)
            if stored is not None:
                _write_private_file(self.file, msgspec.json.encode(stored))
                _prune(self.file.parent)
        except Exception as exc:  # a cache is an optimization: never a reason to fail
            log.debug("config not cached in %s: %s", self.file, exc)

    def _stored(self, config: RunConfig, secret_names: frozenset[str]) -> _Stored | None:
        if not secret_names <= self.values.keys():
            log.debug("config not cached: it names a secret in a way the cache cannot see")
            return None
        names = sorted(name for name in secret_names if self.values.get(name))
        values = [self.values[name] or "" for name in names]
        if values:
            document = _masked(to_document(config), values)
            if document is None:
                return None
            urls = [*((feed["url"], False) for feed in document["feeds"]),
                    *((target["url"], True) for target in document["notify"])]  # fmt: skip
            data = msgspec.json.encode(document)
        else:  # most configs, and the largest: no copy of the whole as dicts
            urls = [*((feed.url, False) for feed in config.feeds),
                    *((target.url, True) for target in config.notify)]  # fmt: skip
            data = to_json(config)
        # Credentials written in the file itself (a password in a feed URL) would be
        # copied to a place less guarded than the config: such a config is not cached.
        if any(_written_credential(url, target=target) for url, target in urls):
            log.debug("config not cached: it holds a credential written in a URL")
            return None
        salt = secrets.token_hex(16)
        return _Stored(self._key(salt, names, data), salt, names, msgspec.Raw(data))


def _masked(document: Any, values: list[str]) -> Any:
    """``document`` with each of the secret ``values`` replaced by its marker, or None if
    that cannot hide them."""
    if _any_string(document, lambda s: "\x00" in s):
        return None  # a marker could not be told from the text

    # Each secret must be found as it was given: else validation changed it (parsed,
    # trimmed or lowercased it) and a marker could not hide it...
    def kept(value: str) -> bool:
        return _any_string(document, lambda s: value in s)

    if not all(map(kept, values)):
        log.debug("config not cached: a secret is not kept as given")
        return None
    number = {value: n for n, value in enumerate(values)}
    pattern = re.compile("|".join(map(re.escape, sorted(number, key=len, reverse=True))))
    masked = _walk_strings(
        document, lambda s: pattern.sub(lambda m: f"\x00{number[m.group()]}\x00", s)
    )
    # ...nor anywhere in another spelling.
    variants = {
        variant
        for value in values
        for spelling in (value, value.strip())
        for variant in (spelling, spelling.lower(), spelling.upper())
        if variant
    }
    if _any_string(masked, lambda s: any(v in s for v in variants)):
        log.debug("config not cached: a secret is not kept as given")
        return None
    return masked


# What stands for a secret in a cached string: a marker, or a ${VAR} left unfilled
# (``need_targets=False`` leaves the notify URLs as written).
_STAND_IN_RE = re.compile("\x00[0-9]+\x00|" + r"\$?\$\{[^}]*\}")


def _written_credential(url: str, *, target: bool) -> bool:
    """Whether ``url`` holds a credential written in the config itself rather than as a
    ``${VAR}``: a password (or a user without one), the value of a query parameter named
    like a secret (of any length); and in a notify ``target``, whose URL is its
    credentials (Apprise puts tokens in the address and path: ``tgram://123:AAH.../``),
    any part of the path or address of 8 characters or more that is not a host name.
    Stricter than masking (``monitor.redact``), which must not blank out ordinary words."""

    def literal(text: str | None) -> str:
        return _STAND_IN_RE.sub("", text or "")

    try:
        parts = urlsplit(url.strip())
        password, username = parts.password, parts.username
    except ValueError:
        return True
    if literal(password) or (literal(username) and password is None):
        return True  # a user with a ${VAR} password is a name: `mailto://desk:${PW}@...`
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if literal(value) and secret_param_name(name):
            return True
    if not target:
        return False
    address = [literal(piece) for piece in parts.netloc.rpartition("@")[2].split(":")]
    path = [literal(piece) for piece in parts.path.split("/")]
    return any(
        len(piece) >= 8 and not host_name(piece.removesuffix(".")) for piece in address
    ) or any(len(piece) >= 8 for piece in path)


class _Stored(msgspec.Struct):
    key: str  # over the inputs, the salt, ``secrets`` and ``config``: a changed byte is a miss
    salt: str
    secrets: list[str]  # the names of the secrets the config holds; marker n is the n-th
    config: msgspec.Raw  # a RunConfig as JSON, secrets replaced by markers


def _private_directory(directory: Path) -> bool:
    """Whether ``directory`` is this user's and no one else may write to it."""
    status = os.stat(directory)
    return status.st_uid == os.getuid() and not status.st_mode & 0o022


def _read_private_file(path: Path) -> bytes | None:
    """The content of the cache file ``path``, or None unless it is this user's own
    regular file, of a sane size, in a directory no one else may write to."""
    if not _private_directory(path.parent):
        return None
    return _read_regular_file(path, MAX_CACHE_BYTES, follow=False)


def _write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once, readable by this user only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _private_directory(path.parent):
        # It would never be read (``_read_private_file``).
        log.debug("config not cached: others may write to %s", path.parent)
        return
    temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


STALE_AFTER = 30 * 86400  # a cache file not used for this long is deleted


def _prune(directory: Path) -> None:
    """Delete cache files of configs not loaded for a month (a config moved or deleted
    leaves its file behind; one in use is touched at least daily when read)."""
    now = time.time()
    for entry in os.scandir(directory):
        if entry.name.startswith("config-") and ".json" in entry.name:
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER:
                    os.unlink(entry.path)


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
