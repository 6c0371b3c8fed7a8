#!/usr/bin/env python3
"""pymemcache against ringcache: python3 pymemcache_suite.py [options] PORT [PORT...]

Exercises pymemcache's Client (against the first port) and HashClient (over all ports) on
127.0.0.1: set/get, set_many/get_many, add/replace/append/prepend, gets + cas, incr/decr,
touch, delete/delete_many, a ~500 KB value, noreply writes, and values with flags through a
serde. Keys carry a random prefix so runs never collide. Prints every failed check and exits
1 if there was one (2 on a usage error); prints a summary line either way.

Options (so a caller can choose where the keys live, e.g. on the nodes of a cluster other
than the one the Client talks to):
  --prefix P      use P as the key prefix instead of a random one
  --list-keys     print every key the suite uses (with the prefix), one a line, and exit
  --keymap FILE   FILE holds lines "KEY<TAB>REPLACEMENT": the suite uses REPLACEMENT
                  wherever it would use KEY; every key must be listed
"""

import argparse
import sys
import uuid

from pymemcache import serde
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

TIMEOUT = 5.0
checks = 0
failures = []

# Every key name `exercise` uses (after its prefix), and the values `exercise_serde` stores.
NAMES = (
    ["a", "missing", "nr", "empty", "bin"]
    + [f"m{i}" for i in range(40)]
    + ["m-missing", "add", "rep-missing", "app-missing", "cas", "cas-missing"]
    + ["n", "n-missing", "big", "grow", "touch-missing", "large", "gone"]
)
SERDE_VALUES = {
    "str": "text ü",
    "int": 12345,
    "bytes": b"raw",
    "dict": {"a": [1, 2, 3], "b": None},
    "tuple": (1, "two", 3.0),
}
# KEY -> the key to use instead (--keymap); None when there is no map.
KEYMAP = None


def all_keys(prefix):
    """Every key a run with `prefix` uses, in the order main() uses the prefixes."""
    keys = []
    for sub in ("c-", "h-"):
        keys += [f"{prefix}{sub}{n}" for n in NAMES]
    for sub in ("", "h-"):
        keys += [f"{prefix}{sub}serde-{n}" for n in SERDE_VALUES]
    return keys


def key(full):
    """The key to send for `full` (itself unless the keymap replaces it)."""
    if KEYMAP is None:
        return full
    if full not in KEYMAP:
        raise SystemExit(f"key {full!r} is not in the keymap: all_keys() is out of date")
    return KEYMAP[full]


def check(label, what, got, want):
    global checks
    checks += 1
    if got != want:
        shown = repr(got) if len(repr(got)) < 200 else repr(got)[:200] + "..."
        failures.append(f"[{label}] {what}: got {shown}, want {want!r}"[:600])


def exercise(c, label, prefix):
    """Runs every check through client `c` (a Client or a HashClient)."""

    def k(name):
        if name not in NAMES:
            raise SystemExit(f"key name {name!r} is missing from NAMES")
        return key(f"{prefix}{name}")

    # set / get, missing keys, noreply
    check(label, "set", c.set(k("a"), b"hello"), True)
    check(label, "get", c.get(k("a")), b"hello")
    check(label, "get missing", c.get(k("missing")), None)
    check(label, "get missing with default", c.get(k("missing"), default=b"dflt"), b"dflt")
    c.set(k("nr"), b"quiet", noreply=True)
    check(label, "get after noreply set", c.get(k("nr")), b"quiet")
    check(label, "set empty", c.set(k("empty"), b""), True)
    check(label, "get empty", c.get(k("empty")), b"")
    binary = bytes(range(256)) * 4
    check(label, "set binary", c.set(k("bin"), binary), True)
    check(label, "get binary", c.get(k("bin")), binary)

    # set_many / get_many
    many = {k(f"m{i}"): f"value-{i}".encode() for i in range(40)}
    check(label, "set_many failed keys", c.set_many(many), [])
    got = c.get_many(list(many) + [k("m-missing")])
    check(label, "get_many", got, many)

    # add / replace / append / prepend
    check(label, "add new", c.add(k("add"), b"1"), True)
    check(label, "add existing", c.add(k("add"), b"2"), False)
    check(label, "value after add", c.get(k("add")), b"1")
    check(label, "replace missing", c.replace(k("rep-missing"), b"x"), False)
    check(label, "replace existing", c.replace(k("add"), b"3"), True)
    check(label, "value after replace", c.get(k("add")), b"3")
    check(label, "append", c.append(k("add"), b"45"), True)
    check(label, "prepend", c.prepend(k("add"), b"012"), True)
    check(label, "value after append+prepend", c.get(k("add")), b"012345")
    check(label, "append missing", c.append(k("app-missing"), b"x"), False)
    check(label, "prepend missing", c.prepend(k("app-missing"), b"x"), False)

    # gets + cas
    c.set(k("cas"), b"v1")
    value, token = c.gets(k("cas"))
    check(label, "gets value", value, b"v1")
    check(label, "gets cas is a number", isinstance(token, bytes) and token.isdigit(), True)
    check(label, "cas with fresh token", c.cas(k("cas"), b"v2", token), True)
    check(label, "cas with stale token", c.cas(k("cas"), b"v3", token), False)
    check(label, "value after cas", c.get(k("cas")), b"v2")
    value2, token2 = c.gets(k("cas"))
    check(label, "cas token changed", token2 != token, True)
    check(label, "cas missing key", c.cas(k("cas-missing"), b"x", b"1"), None)
    check(label, "gets missing", c.gets(k("cas-missing")), (None, None))
    if hasattr(c, "gets_many"):
        got = c.gets_many([k("cas"), k("a")])
        check(label, "gets_many values", {key: v for key, (v, _) in got.items()}, {k("cas"): b"v2", k("a"): b"hello"})

    # incr / decr
    c.set(k("n"), b"10")
    check(label, "incr", c.incr(k("n"), 5), 15)
    check(label, "decr", c.decr(k("n"), 3), 12)
    check(label, "decr below zero", c.decr(k("n"), 100), 0)
    check(label, "incr missing", c.incr(k("n-missing"), 1), None)
    check(label, "decr missing", c.decr(k("n-missing"), 1), None)
    c.set(k("big"), b"18446744073709551615")
    check(label, "incr wraps at 2^64", c.incr(k("big"), 1), 0)
    c.set(k("grow"), b"99")
    check(label, "incr grows the length", c.incr(k("grow"), 1), 100)
    check(label, "value after incr", c.get(k("grow")), b"100")

    # touch
    check(label, "touch existing", c.touch(k("a"), 100), True)
    check(label, "touch missing", c.touch(k("touch-missing"), 100), False)
    check(label, "value after touch", c.get(k("a")), b"hello")

    # delete / delete_many
    check(label, "delete existing", c.delete(k("a")), True)
    check(label, "delete missing", c.delete(k("a")), False)
    check(label, "get after delete", c.get(k("a")), None)
    check(label, "delete_many", c.delete_many([k(f"m{i}") for i in range(40)]), True)
    check(label, "get_many after delete_many", c.get_many([k(f"m{i}") for i in range(40)]), {})

    # a large value (~500 KB), below the default 1 MiB item size
    large = (b"0123456789abcdef" * 32 * 1024)[: 500 * 1024]
    check(label, "set 500 KB", c.set(k("large"), large), True)
    check(label, "get 500 KB", c.get(k("large")), large)

    # expiry in the past removes at once
    c.set(k("gone"), b"x", expire=-1)
    check(label, "negative expire", c.get(k("gone")), None)


def exercise_serde(c, label, prefix):
    """Values of several Python types through pickle_serde: the type travels in the flags."""
    for name, value in SERDE_VALUES.items():
        check(label, f"serde set {name}", c.set(key(f"{prefix}serde-{name}"), value), True)
    for name, value in SERDE_VALUES.items():
        got = c.get(key(f"{prefix}serde-{name}"))
        check(label, f"serde get {name}", (type(got), got), (type(value), value))


def main():
    global KEYMAP
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("--prefix")
    parser.add_argument("--list-keys", action="store_true")
    parser.add_argument("--keymap")
    parser.add_argument("ports", nargs="*", type=int)
    args = parser.parse_args()
    prefix = args.prefix if args.prefix is not None else f"py-{uuid.uuid4().hex[:8]}-"
    if args.list_keys:
        for k in all_keys(prefix):
            print(k)
        return 0
    if not args.ports:
        print(__doc__, file=sys.stderr)
        return 2
    if args.keymap:
        KEYMAP = {}
        with open(args.keymap, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    full, _, replacement = line.rstrip("\n").partition("\t")
                    KEYMAP[full] = replacement
    ports = args.ports
    opts = dict(connect_timeout=TIMEOUT, timeout=TIMEOUT, default_noreply=False)

    single = Client(("127.0.0.1", ports[0]), **opts)
    exercise(single, f"Client :{ports[0]}", prefix + "c-")
    exercise_serde(Client(("127.0.0.1", ports[0]), serde=serde.pickle_serde, **opts), "Client+serde", prefix)
    single.close()

    servers = [("127.0.0.1", p) for p in ports]
    hashed = HashClient(servers, ignore_exc=False, retry_attempts=1, **opts)
    exercise(hashed, f"HashClient x{len(ports)}", prefix + "h-")
    exercise_serde(HashClient(servers, serde=serde.pickle_serde, **opts), "HashClient+serde", prefix + "h-")
    hashed.close()

    for f in failures:
        print("FAIL", f)
    print(f"pymemcache suite: {checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
