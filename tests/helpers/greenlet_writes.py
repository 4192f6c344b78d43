"""Write groups as the web process runs them: greenlets in a process gevent patched, on a real SQLite file.

``python -m tests.helpers.greenlet_writes SCENARIO DB_PATH`` prints one JSON object: what each
greenlet got (a value, or the name of the error it raised), what the database holds afterwards,
and how many transactions committed. :mod:`tests.test_write_groups` runs it, since patching the
test runner's own process is not an option.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402  (after the patch, as in gunicorn's gevent worker)
import sys  # noqa: E402

import gevent  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from webhook.events import PushEvent  # noqa: E402
from webhook.fair_lock import FairLock  # noqa: E402
from webhook.store import BuildStore, create_db_engine  # noqa: E402
from webhook.write_groups import WriteGroups, cooperative_pause  # noqa: E402


def insert(name, *, fail=False, bad_parent=False):
    def work(conn):
        conn.exec_driver_sql("INSERT INTO items (name, parent) VALUES (?, ?)", (name, 999 if bad_parent else None))
        if fail:
            raise ValueError(name)
        return name
    return work


def spawn(action, *args):
    """A greenlet running ``action(*args)``, whose value is what it returned or the name of what it raised."""
    def attempt():
        try:
            return action(*args)
        except Exception as exc:
            return type(exc).__name__
    return gevent.spawn(attempt)


def outcome(greenlet):
    return "killed" if isinstance(greenlet.value, gevent.GreenletExit) else greenlet.value


def main(scenario, path):
    engine = create_db_engine(f"sqlite:///{path}")
    commits = []
    sa.event.listen(engine, "commit", lambda conn: commits.append(1))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT UNIQUE, parent "
                             "INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)")
    commits.clear()
    groups = WriteGroups(engine, pause=cooperative_pause(engine))
    report = {"grouped": groups.pause is not None}

    if scenario == "burst":
        seen_at_return = {}

        def write(name):
            result = groups.run(insert(name))
            with sqlite_reader(path) as other:  # another connection: what is committed
                seen_at_return[name] = bool(other.execute("SELECT 1 FROM items WHERE name = ?", (name,)).fetchone())
            return result
        workers = [spawn(write, f"i{n}") for n in range(10)]
        gevent.joinall(workers)
        report["seen_by_others_when_answered"] = seen_at_return
    elif scenario == "member_fails":
        workers = [spawn(groups.run, insert(f"i{n}", fail=n == 2)) for n in range(5)]
        gevent.joinall(workers)
    elif scenario == "whole_transaction_rolled_back":
        def roll_back_all(conn):  # a conflict SQLite answers by rolling the whole transaction back
            conn.exec_driver_sql("INSERT OR ROLLBACK INTO items (name) VALUES ('i0')")
        workers = [spawn(groups.run, insert("i0")), spawn(groups.run, insert("i1")), spawn(groups.run, roll_back_all),
                   spawn(groups.run, insert("i3"))]
        gevent.joinall(workers)
    elif scenario == "many":
        workers = [spawn(groups.run, insert(f"i{n:03}")) for n in range(150)]
        gevent.joinall(workers)
    elif scenario == "context":
        from webhook.logs import _context, log_context

        def whose(conn):
            return dict(_context.get()).get("delivery")

        def deliver(name):
            with log_context(delivery=name):
                return groups.run(whose)
        workers = [spawn(deliver, f"d{n}") for n in range(3)]
        gevent.joinall(workers)
    elif scenario == "yielding_write":
        def slow(conn):
            gevent.sleep(0.01)  # other greenlets run meanwhile; none may touch the transaction
            return insert("slow")(conn)
        workers = [spawn(groups.run, insert("i0")), spawn(groups.run, slow), spawn(groups.run, insert("i2"))]
        gevent.sleep(0.001)
        workers.append(spawn(groups.run, insert("late")))
        gevent.joinall(workers)
    elif scenario == "commit_fails":
        engine.dispose()  # connections opened from now on check foreign keys, when they commit (deferred)
        sa.event.listen(engine, "connect", lambda dbapi_connection, _: dbapi_connection.execute("PRAGMA foreign_keys=ON"))
        workers = [spawn(groups.run, insert(f"i{n}", bad_parent=n == 3)) for n in range(5)]
        gevent.joinall(workers)
    elif scenario == "leader_killed":
        groups.pause = lambda: gevent.sleep(0.5)
        workers = [spawn(groups.run, insert(f"i{n}")) for n in range(5)]
        gevent.sleep(0.05)  # the first has written and pauses; the others have joined
        gevent.kill(workers[0])
        gevent.joinall(workers)
    elif scenario == "turn_held_elsewhere":
        holder_done = []

        def hold():
            with engine.begin():
                gevent.sleep(0.2)  # deliveries arrive while another transaction holds the write turn
            holder_done.append(1)
        holder = gevent.spawn(hold)
        gevent.sleep(0.01)
        workers = [spawn(groups.run, insert("i0"))]
        gevent.sleep(0.05)  # its leader waits for the turn: the others arrive now
        workers += [spawn(groups.run, insert(f"i{n}")) for n in range(1, 6)]
        gevent.joinall([holder, *workers])
    elif scenario == "same_push_twice":
        store = BuildStore(engine, writes=groups)
        store.create_schema()
        commits.clear()
        event = PushEvent(forge="github", repo="acme/app", ref="refs/heads/main", sha="a" * 40, before="0" * 40,
                          pusher="someone", delivery_id="d1")
        other = PushEvent(forge="github", repo="acme/app", ref="refs/heads/dev", sha="b" * 40, before="0" * 40,
                          pusher="someone", delivery_id="d2")

        def accept(events):
            recorded = store.accept(events, from_forge=True)
            return [[b.id for b in recorded.builds], recorded.created]
        breaking = [spawn(groups.run, insert("orphan", bad_parent=True))] if "--failing" in sys.argv else []
        if breaking:
            engine.dispose()
            sa.event.listen(engine, "connect", lambda dbapi_connection, _: dbapi_connection.execute("PRAGMA foreign_keys=ON"))
        workers = [spawn(accept, [e]) for e in (event, event, other, event)] + breaking
        gevent.joinall(workers)
        with sqlite_reader(path) as db:
            report["builds"] = db.execute("SELECT id, ref FROM builds ORDER BY id").fetchall()
    elif scenario == "fair_lock_waiter_killed":
        lock, order = FairLock(), []

        def take(name):
            with lock:
                order.append(name)
        lock.acquire()
        workers = [spawn(take, name) for name in ("first", "second", "third")]
        gevent.sleep(0.01)  # all three wait, in that order
        if "--when-handed" in sys.argv:
            workers[0].kill(block=False)  # killed as the lock is handed to it: it passes the lock on
        else:
            gevent.kill(workers[1])
        lock.release()
        gevent.joinall(workers)
        report["order"] = order
        report["free"] = not lock._held and not lock._waiters
    else:
        raise SystemExit(f"no such scenario: {scenario}")

    report["outcomes"] = [outcome(w) for w in workers]
    report["commits"] = len(commits)
    with sqlite_reader(path) as db:
        report["items"] = [row[0] for row in db.execute("SELECT name FROM items ORDER BY name")]
    print(json.dumps(report))


class sqlite_reader:
    """A plain sqlite3 connection of its own, closed on leaving."""

    def __init__(self, path):
        import sqlite3
        self.db = sqlite3.connect(path)

    def __enter__(self):
        return self.db

    def __exit__(self, *_):
        self.db.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])  # --failing: same_push_twice's commit fails; --when-handed: fair_lock_waiter_killed as it gets the lock
