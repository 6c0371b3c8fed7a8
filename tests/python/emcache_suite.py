#!/usr/bin/env python3
"""emcache (asyncio) against one memcached-compatible node: python3 emcache_suite.py PORT

emcache reads the `version` reply strictly (it splits the line into exactly two words),
so this checks that first, then set/get, get_many, add/replace/append/prepend, gets + cas,
increment/decrement, touch, gat, delete, noreply writes, a ~500 KB value, `stats` and
`cache_memlimit` through one node on 127.0.0.1 (a single node, or one node of a cluster,
which forwards every key to its owner). Keys carry a random prefix so runs never collide.
Prints every failed check and exits 1 if there was one (2 on a usage error); prints a
summary line either way.
"""

import asyncio
import sys
import uuid

import emcache

TIMEOUT = 5.0
checks = 0
failures = []


def check(what, got, want):
    global checks
    checks += 1
    if got != want:
        shown = repr(got) if len(repr(got)) < 200 else repr(got)[:200] + "..."
        failures.append(f"{what}: got {shown}, want {want!r}"[:600])


async def raises(what, coro, exc):
    """Checks that awaiting `coro` raises `exc`."""
    global checks
    checks += 1
    try:
        await coro
    except exc:
        return
    except Exception as e:  # noqa: BLE001 - reported as a failure
        failures.append(f"{what}: raised {type(e).__name__}: {e}, want {exc.__name__}")
        return
    failures.append(f"{what}: returned, want {exc.__name__}")


async def value(c, key):
    item = await c.get(key)
    return None if item is None else item.value


async def exercise(port):
    address = emcache.MemcachedHostAddress("127.0.0.1", port)
    c = await emcache.create_client([address], timeout=TIMEOUT, connection_timeout=TIMEOUT)
    prefix = f"em-{uuid.uuid4().hex[:8]}-"

    def k(name):
        return f"{prefix}{name}".encode()

    try:
        # version: one token after VERSION, with memcached's numbers first.
        version = await c.version(address)
        check("version is one token", " " in version, False)
        check("version starts with memcached's numbers", version.split(".")[0].isdigit(), True)

        # set / get, missing keys, noreply
        await c.set(k("a"), b"hello")
        check("get", await value(c, k("a")), b"hello")
        check("get missing", await c.get(k("missing")), None)
        await c.set(k("nr"), b"quiet", noreply=True)
        check("get after noreply set", await value(c, k("nr")), b"quiet")
        await c.set(k("flags"), b"f", flags=42)
        item = await c.get(k("flags"), return_flags=True)
        check("flags", (item.value, item.flags), (b"f", 42))
        binary = bytes(range(256)) * 4
        await c.set(k("bin"), binary)
        check("get binary", await value(c, k("bin")), binary)
        large = b"z" * (500 * 1024)
        await c.set(k("large"), large)
        check("get large", await value(c, k("large")), large)

        # get_many over several keys (each forwarded to its owner on a cluster node)
        many = {k(f"m{i}"): f"v{i}".encode() for i in range(20)}
        for key, v in many.items():
            await c.set(key, v)
        got = await c.get_many(list(many) + [k("m-missing")])
        check("get_many", {key: item.value for key, item in got.items()}, many)

        # add / replace / append / prepend
        await c.add(k("add"), b"1")
        await raises("add existing", c.add(k("add"), b"2"), emcache.NotStoredStorageCommandError)
        check("add kept the first value", await value(c, k("add")), b"1")
        await raises("replace missing", c.replace(k("none"), b"x"), emcache.NotStoredStorageCommandError)
        await c.replace(k("add"), b"3")
        await c.append(k("add"), b"45")
        await c.prepend(k("add"), b"012")
        check("replace/append/prepend", await value(c, k("add")), b"012345")

        # gets + cas
        item = await c.gets(k("a"))
        check("gets value", item.value, b"hello")
        await c.cas(k("a"), b"v2", item.cas)
        await raises("cas with a stale token", c.cas(k("a"), b"v3", item.cas), emcache.StorageCommandError)
        check("value after cas", await value(c, k("a")), b"v2")

        # increment / decrement
        await c.set(k("n"), b"10")
        check("increment", await c.increment(k("n"), 5), 15)
        check("decrement below zero", await c.decrement(k("n"), 20), 0)
        await raises("increment missing", c.increment(k("n-missing"), 1), emcache.NotFoundCommandError)

        # touch / gat / delete
        await c.touch(k("a"), 100)
        await raises("touch missing", c.touch(k("missing"), 100), emcache.NotFoundCommandError)
        item = await c.gat(100, k("a"))
        check("gat", item.value, b"v2")
        await c.delete(k("a"))
        await raises("delete again", c.delete(k("a")), emcache.NotFoundCommandError)
        check("get after delete", await c.get(k("a")), None)

        # stats and cache_memlimit go to the node itself
        stats = await c.stats(address)
        check("stats version", stats.get("version"), version)
        check("stats has curr_items", "curr_items" in stats, True)
        await c.cache_memlimit(address, 64)
        settings = await c.stats(address, "settings")
        check("maxbytes after cache_memlimit 64", settings.get("maxbytes"), str(64 << 20))
    finally:
        await c.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(exercise(int(sys.argv[1])))
    for f in failures:
        print("FAIL", f)
    print(f"emcache suite: {checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
