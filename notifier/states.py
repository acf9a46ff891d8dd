"""The one owner of a notice's and a batch's state in Redis.

Every move between states (accept, cancel; an alert's issue, approval, withdrawal; the
cut, its finish, a batch's record, retry and requeue; the breaker; the scheduler's
release) is one Lua script in ``notifier/lua/``, a file each; so are the counters every
worker shares: X's windows (``x_reserve``, ``x_block``, by channels/x.py) and the slots
of a rate limit (``rate``, by notifier/ratelimit.py). A file begins with a header
comment saying what the script writes together, then names every key and argument it
reads (``local done_key = KEYS[1]``, ``local batch = ARGV[1]``; a variable tail is
``local check_keys = rest(KEYS, 7)``); a shared function (``settle``, ``rest``) is a file
of its own, put before the scripts whose header says ``-- uses: settle``. Each file is
read once; :class:`Scripts` calls a script by name with those names as keyword
arguments, and :meth:`Scripts.run_replicated` follows it with WAIT on the same
connection ("accepted" means on a replica). docs/operations.md lists per script what a
failover that loses its last writes means.

A batch on a delivery stream is a :class:`BatchEntry`, whoever writes or reads it: the
dispatcher (X and print), the cut script (field by field, by the same names), the worker
and its retries.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeAlias, get_args

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from notifier.streams import as_text

ScriptName: TypeAlias = Literal[
    "accept",
    "cancel",
    "issue",
    "approve",
    "withdraw",
    "cut",
    "finish",
    "record",
    "retry",
    "requeue",
    "breaker",
    "release",
    "x_reserve",
    "x_block",
    "rate",
    "index_upgrade",
    "suspend",
    "jma_take",
    "jma_decide",
]
SCRIPTS: tuple[str, ...] = get_args(ScriptName)
Value: TypeAlias = str | bytes | int | float

_ONE = re.compile(r"^local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?(?: *--.*)?$", re.M)
_REST = re.compile(r"^local (\w+) = rest\((KEYS|ARGV), (\d+)\)(?: *--.*)?$", re.M)
_USES = re.compile(r"^-- uses: ([\w, ]+)$", re.M)
_TABLES = re.compile(r"\b(?:KEYS|ARGV)\b")
_COMMENT = re.compile(r"--.*")


@dataclass(frozen=True)
class Script:
    """A script as its file declares it: the names of its keys and arguments, in order,
    and of the list that takes the rest of either, if it has one."""

    name: str
    source: str  # the functions it uses, then the file
    keys: tuple[str, ...]
    args: tuple[str, ...]
    more_keys: str | None = None
    more_args: str | None = None
    uses: tuple[str, ...] = ()

    def bind(self, values: Mapping[str, Value | Sequence[Value]]) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV from keyword arguments; TypeError for a missing or unknown name."""
        wanted = [*self.keys, *self.args, *filter(None, (self.more_keys, self.more_args))]
        missing = [n for n in wanted if n not in values]
        unknown = sorted(set(values) - set(wanted))
        if missing or unknown:
            raise TypeError(f"{self.name}.lua: missing {missing or 'nothing'}, unknown {unknown}")
        keys, args = [values[n] for n in self.keys], [values[n] for n in self.args]
        for tail, into in ((self.more_keys, keys), (self.more_args, args)):
            if tail is not None:
                items = values[tail]
                if isinstance(items, str | bytes) or not isinstance(items, Sequence):
                    raise TypeError(f"{self.name}.lua: {tail} is a list")
                into.extend(items)
        return keys, args


def parse(name: str, text: str, libraries: Mapping[str, str]) -> Script:
    """A script's declarations, checked: ValueError names what breaks the conventions."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"{name}.lua: {why}")

    if not text.startswith("--"):
        raise refuse("begins with a header comment saying what it writes together")
    one: dict[str, list[tuple[int, str]]] = {"KEYS": [], "ARGV": []}
    for m in _ONE.finditer(text):
        one[m[2]].append((int(m[3]), m[1]))
    tails: dict[str, tuple[int, str]] = {}
    for m in _REST.finditer(text):
        if m[2] in tails:
            raise refuse(f"takes the rest of {m[2]} twice")
        tails[m[2]] = (int(m[3]), m[1])
    declared = len(one["KEYS"]) + len(one["ARGV"]) + len(tails)
    if len(_TABLES.findall(_COMMENT.sub("", text))) != declared:
        raise refuse("reads KEYS or ARGV other than through its named locals")
    for table, found in one.items():
        if [i for i, _ in found] != list(range(1, len(found) + 1)):
            raise refuse(f"names {table}[1], {table}[2], … in order, each once")
        if table in tails and tails[table][0] != len(found) + 1:
            raise refuse(f"its rest of {table} starts after the last one named")
    keys, args = [n for _, n in one["KEYS"]], [n for _, n in one["ARGV"]]
    more_keys, more_args = (tails[t][1] if t in tails else None for t in ("KEYS", "ARGV"))
    names = [*keys, *args, *filter(None, (more_keys, more_args))]
    if len(set(names)) != len(names) or "client" in names:
        raise refuse("names each key and argument once, none of them 'client'")
    if not all(n.endswith("_key") for n in keys) or (more_keys and not more_keys.endswith("_keys")):
        raise refuse("names its keys *_key (a list of them *_keys)")
    if any(n.endswith(("_key", "_keys")) for n in [*args, more_args or ""]):
        raise refuse("names an argument like a key")
    uses = [u.strip() for m in _USES.finditer(text) for u in m[1].split(",")]
    for lib in uses:
        if lib not in libraries:
            raise refuse(f"uses {lib}, which is not a file of notifier/lua")
    for lib in set(libraries) - set(uses):
        if re.search(rf"\b{lib}\(", text):
            raise refuse(f"calls {lib}() without '-- uses: {lib}'")
    source = "\n".join([*(libraries[lib] for lib in uses), text])
    return Script(name, source, tuple(keys), tuple(args), more_keys, more_args, tuple(uses))


@functools.cache
def load() -> dict[str, Script]:
    """Every script, read once from the package's ``lua`` folder."""
    folder = resources.files("notifier") / "lua"
    texts = {
        f.name.removesuffix(".lua"): f.read_text(encoding="utf-8")
        for f in folder.iterdir()
        if f.name.endswith(".lua")
    }
    missing = [name for name in SCRIPTS if name not in texts]
    if missing:
        raise ValueError(f"notifier/lua has no {', '.join(f'{n}.lua' for n in missing)}")
    libraries = {name: text for name, text in texts.items() if name not in SCRIPTS}
    scripts = {name: parse(name, texts[name], libraries) for name in SCRIPTS}
    unused = [lib for lib in libraries if not any(lib in s.uses for s in scripts.values())]
    if unused:
        raise ValueError(f"notifier/lua: {', '.join(unused)} neither a script nor used by one")
    return scripts


class Scripts:
    """The scripts on one Redis client, called by name with keyword arguments.

    ``min_replicas``: how many replicas must confirm what :meth:`run_replicated` wrote
    (Redis WAIT, up to ``replica_timeout`` seconds) for it to count as replicated."""

    def __init__(self, redis: Redis, min_replicas: int = 0, replica_timeout: float = 0.5) -> None:
        self.redis = redis
        self.min_replicas, self.replica_timeout = min_replicas, replica_timeout
        self._registered: dict[str, AsyncScript] = {}

    async def run(
        self,
        name: ScriptName,
        /,
        *,
        client: Pipeline | None = None,
        **values: Value | Sequence[Value],
    ) -> Any:
        """Run ``name`` (queue it, with a pipeline as ``client``): a TypeError for a missing
        or unknown key or argument is raised before anything is sent."""
        registered, keys, args = self._bound(name, values)
        return await registered(keys=keys, args=args, client=client)

    async def run_replicated(
        self, name: ScriptName, /, **values: Value | Sequence[Value]
    ) -> tuple[Any, bool]:
        """Run ``name`` and WAIT for replicas on the same connection: (its result, whether
        enough replicas confirmed it in time). Without ``min_replicas``, no WAIT: True.

        The pair is one pipeline of EVALSHA and WAIT, the script loaded only when Redis
        says it lacks it (a pipeline given a script object asks SCRIPT EXISTS every time:
        a round trip more for each batch a worker records)."""
        registered, keys, args = self._bound(name, values)
        if not self.min_replicas:
            return await registered(keys=keys, args=args), True
        try:
            return await self._with_wait(registered.sha, keys, args)
        except NoScriptError:  # a Redis restarted or promoted lacks it: nothing was run
            await self.redis.script_load(load()[name].source)
            return await self._with_wait(registered.sha, keys, args)

    def _bound(
        self, name: ScriptName, values: Mapping[str, Value | Sequence[Value]]
    ) -> tuple[AsyncScript, list[Any], list[Any]]:
        script = load()[name]
        keys, args = script.bind(values)
        registered = self._registered.get(name)
        if registered is None:
            registered = self._registered[name] = self.redis.register_script(script.source)
        return registered, keys, args

    async def _with_wait(self, sha: str, keys: list[Any], args: list[Any]) -> tuple[Any, bool]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(sha, len(keys), *keys, *args)
            pipe.wait(self.min_replicas, max(1, int(self.replica_timeout * 1000)))
            result, confirmed = await pipe.execute()
        return result, int(confirmed) >= self.min_replicas


@dataclass(frozen=True)
class BatchEntry:
    """One batch on a delivery stream. On the wire: a stream field per attribute, numbers
    in decimal, ``recipients`` and ``areas`` as compact JSON arrays (what cut.lua writes
    too); ``from_fields`` also reads the form before it, one JSON ``data`` field."""

    notice: str
    kind: str
    channel: str
    lang: str
    n: int  # its number among the (notice, channel)'s batches
    recipients: tuple[str, ...] = ()  # subscriber ids (a subscriber channel's batch)
    areas: tuple[str, ...] = ()  # the areas of a print flyer
    size: int = 0  # how many recipients it counts for in the progress
    attempt: int = 1

    def to_fields(self) -> dict[str, str]:
        return {
            "notice": self.notice,
            "kind": self.kind,
            "channel": self.channel,
            "lang": self.lang,
            "n": str(self.n),
            "recipients": json.dumps(list(self.recipients), separators=(",", ":")),
            "areas": json.dumps(list(self.areas), separators=(",", ":")),
            "size": str(self.size),
            "attempt": str(self.attempt),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> BatchEntry:
        found = {as_text(k): as_text(v) for k, v in fields.items()}
        values: dict[str, Any]
        if "data" in found:  # written before the flat fields: one JSON object
            values = json.loads(found["data"])
        else:  # Lua's cjson writes an empty list as {}
            lists = {name: json.loads(found[name]) or [] for name in ("recipients", "areas")}
            values = {**found, **lists}
        return cls(
            notice=str(values["notice"]),
            kind=str(values["kind"]),
            channel=str(values["channel"]),
            lang=str(values["lang"]),
            n=int(values["n"]),
            recipients=tuple(str(r) for r in values["recipients"]),
            areas=tuple(str(a) for a in values["areas"]),
            size=int(values["size"]),
            attempt=int(values["attempt"]),
        )

    def retry_member(self, stream: str) -> str:
        """The entry as a member of the retries set: the stream it goes back on, and its
        fields as [name, value, …] (requeue.lua adds them to the stream in that order)."""
        flat = [item for pair in self.to_fields().items() for item in pair]
        return json.dumps({"stream": stream, "fields": flat}, separators=(",", ":"))
