#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Root never writes through a symlink planted in the state directory.

The state directory belongs to an unprivileged user (nobody here, knock on a
real system) and is writable by its group (knock: the operators), whose
members may plant symlinks in it. While root runs `knockctl backup` and
`knockctl restore` over and over, a racer running as another user of that
group (daemon here) plants
symlinks to a root-owned file at every temporary path it can see or guess:
the old predictable names (NAME.db.restore-tmp, .NAME-STAMP.db.tmp-PID of the
running knockctl) and the files inside every hidden temporary directory that
appears. Asserted: the root-owned file is never written, every restored
database belongs to the directory's owner, and the endpoint's database ends
whole. Needs root (skipped otherwise).
"""

import os
import pwd
import subprocess
import sys
import tempfile
import time

import knocktest as kt

ROUNDS = 25


def racer(state, name, victim, stop, count):
    """Runs in a child as a member of the state directory's group until stop exists."""
    backups = os.path.join(state, "backups", name)
    planted = 0

    def plant(path):
        nonlocal planted
        try:
            if os.path.lexists(path) and not os.path.islink(path):
                os.unlink(path)
            os.symlink(victim, path)
            planted += 1
        except OSError:
            pass

    while not os.path.exists(stop):
        plant(os.path.join(state, name + ".db.restore-tmp"))
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for pid in knockctl_pids():
            plant(os.path.join(backups, ".%s-%s.db.tmp-%s" % (name, stamp, pid)))
        for d in (state, backups):
            try:
                entries = os.listdir(d)
            except OSError:
                continue
            for e in entries:
                full = os.path.join(d, e)
                if e.startswith(".") and os.path.isdir(full) and not os.path.islink(full):
                    for f in ("copy.db", "copy.db-journal", "copy.db-wal"):
                        plant(os.path.join(full, f))
        time.sleep(0.0005)
    with open(count, "w") as f:
        f.write(str(planted))


def knockctl_pids():
    """Pids of running knockctl processes (the old backup temp name held one)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/comm" % p) as f:
                    if f.read().strip() == "knockctl":
                        out.append(p)
            except OSError:
                pass
    return out


def main():
    t = kt.Tap()
    if os.geteuid() != 0:
        print("1..0 # SKIP needs root (knockctl drops to the state directory's owner)")
        return 0
    kt.sqlite_only(t, "backup and restore of the .db file")
    nobody = pwd.getpwnam("nobody")
    other = pwd.getpwnam("daemon")
    ep = kt.Endpoint("race")
    victim_dir = tempfile.mkdtemp(prefix="knock-victim-")
    racer_pid = None
    try:
        os.chmod(ep.tmp, 0o755)
        os.chmod(victim_dir, 0o755)
        victim = os.path.join(victim_dir, "victim")
        # Empty: SQLite would take it for an empty database and fill it.
        open(victim, "w").close()
        os.chmod(victim, 0o644)
        before = open(victim, "rb").read()

        ep.write_config("[endpoint]\nprovider = none\nallow_unverified = yes\n"
                        "listen = 127.0.0.1:%d\n" % ep.port)
        os.chown(ep.state_dir, nobody.pw_uid, nobody.pw_gid)
        os.chmod(ep.state_dir, 0o2770)
        rc, out, err = ep.knockctl("migrate")
        t.ok(rc == 0, "knockctl migrate as root", err)
        st = os.stat(ep.db_path)
        t.ok(st.st_uid == nobody.pw_uid, "the database created by root belongs to the state "
             "directory's owner", (st.st_uid, st.st_gid))
        kt.insert_event(ep, "evt_keep", "t")

        stop = os.path.join(ep.tmp, "racer.stop")
        racer_dir = os.path.join(ep.tmp, "racer")
        os.makedirs(racer_dir)
        os.chown(racer_dir, other.pw_uid, nobody.pw_gid)
        count = os.path.join(racer_dir, "count")

        racer_pid = os.fork()
        if racer_pid == 0:
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(other.pw_uid)
                racer(ep.state_dir, ep.name, victim, stop, count)
            finally:
                os._exit(0)
        ok_b = ok_r = 0
        failures = []
        for i in range(ROUNDS):
            rc, out, err = ep.knockctl("backup")
            if rc == 0:
                ok_b += 1
                path = out.split("backup written to ")[1].split(" ")[0]
                rc, out, err = ep.knockctl("restore", path)
                ok_r += rc == 0
                if rc != 0:
                    failures.append(err.strip())
            else:
                failures.append(err.strip())
        open(stop, "w").close()
        os.waitpid(racer_pid, 0)
        racer_pid = None
        planted = int(open(count).read())

        t.ok(planted > 0, "the racer planted %d symlinks during %d backups and %d restores"
             % (planted, ok_b, ok_r))
        t.ok(open(victim, "rb").read() == before and os.stat(victim).st_uid == 0,
             "the root-owned file was never written through a symlink", failures[:3])
        t.ok(ok_b == ROUNDS and ok_r == ROUNDS,
             "backups and restores all succeed under the race", failures[:5])
        st = os.stat(ep.db_path)
        t.ok(st.st_uid == nobody.pw_uid and not os.path.islink(ep.db_path),
             "the restored database is a file of the state directory's owner",
             (st.st_uid, st.st_gid, oct(st.st_mode)))
        t.ok(ep.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
             and ep.query("SELECT id FROM events") == [{"id": "evt_keep"}],
             "the database is whole and holds its event")
        owners = {os.lstat(os.path.join(dp, f)).st_uid
                  for dp, dn, fn in os.walk(ep.state_dir) for f in fn + dn}
        t.ok(0 not in owners, "nothing in the state directory belongs to root", owners)
    finally:
        if racer_pid:
            os.kill(racer_pid, 9)
            os.waitpid(racer_pid, 0)
        ep.cleanup()
        subprocess.run(["rm", "-rf", victim_dir])
    t.done()


if __name__ == "__main__":
    sys.exit(main())
