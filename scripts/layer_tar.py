#!/usr/bin/env python3
"""Layer tars for the Debian dataset (scripts/make-dataset.sh).

usage:
  layer_tar.py diff OLD NEW OUT.tar        the layer that turns root filesystem
                                           OLD into NEW (OLD '-': a base layer)
  layer_tar.py check EXPECTED LAYER.tar... LAYER.tar... applied in order, with
                                           their whiteouts, equal EXPECTED (a tar
                                           or a directory), metadata included

`diff` lists what an image builder's change scan (containers/storage's
pkg/archive Changes) lists after one RUN step:
  - an entry that is new, or whose type, mode, owner, device number,
    symlink target, size or mtime changed (a new mtime is a change even
    where the bytes are the same); as a safety net, a file whose bytes
    differ under the same size and mtime too;
  - a directory whose own metadata or mtime changed, or below which
    anything is listed (its entries changed);
  - a '.wh.<name>' whiteout for each entry that vanished (one for a whole
    directory).
Entries are written in path order, a directory before its entries, with
whole-second mtimes as `tar -c` writes them, hardlinks as links to the
first name written in the same layer. The root directory itself is never
part of a layer.

`check` models each tar as a tree of entries (type, mode, owner, mtime,
size, sha256 of the content, symlink target, device, extended
attributes); a hardlink takes the entry it links to. It prints every
difference and exits 1 if there is one.
"""
import hashlib
import os
import stat
import sys
import tarfile

CHUNK = 1 << 20


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True


def changed(old, new):
    """Whether entry NEW differs from OLD (both lstat-able paths)."""
    so, sn = os.lstat(old), os.lstat(new)
    if (so.st_mode, so.st_uid, so.st_gid, so.st_rdev) != (sn.st_mode, sn.st_uid, sn.st_gid, sn.st_rdev):
        return True
    if stat.S_ISDIR(sn.st_mode):
        # Not listed by upstream's scan for its mtime alone, but then
        # base + diff would keep the old mtime: a changed directory mtime
        # is listed too (it changes when its entries do).
        return so.st_mtime_ns != sn.st_mtime_ns
    if so.st_mtime_ns != sn.st_mtime_ns or so.st_size != sn.st_size:
        return True
    if stat.S_ISLNK(sn.st_mode):
        return os.readlink(old) != os.readlink(new)
    if stat.S_ISREG(sn.st_mode):
        return not same_bytes(old, new)
    return False


def scan(old, new, rel):
    """The listing for directory NEW/rel against OLD/rel (OLD may be None):
    a list of ('add', rel) and ('whiteout', rel) in path order."""
    out = []
    new_dir = os.path.join(new, rel)
    names = set(os.listdir(new_dir))
    gone = set()
    old_dir = None if old is None else os.path.join(old, rel)
    if old_dir is not None and os.path.isdir(old_dir) and not os.path.islink(old_dir):
        gone = set(os.listdir(old_dir)) - names
    else:
        old_dir = None
    for name in sorted(names | gone):
        path = os.path.join(rel, name) if rel else name
        if name in gone:
            out.append(("whiteout", path))
            continue
        p = os.path.join(new, path)
        o = None if old_dir is None else os.path.join(old_dir, name)
        is_new = o is None or not os.path.lexists(o)
        is_dir = stat.S_ISDIR(os.lstat(p).st_mode)
        if is_dir:
            old_side = None if is_new or not os.path.isdir(o) or os.path.islink(o) else old
            below = scan(old_side, new, path)
            if is_new or below or changed(o, p):
                out.append(("add", path))
            out.extend(below)
        elif is_new or changed(o, p):
            out.append(("add", path))
    return out


def diff(old, new, out_path):
    old = None if old == "-" else old
    listing = scan(old, new, "")
    tmp = out_path + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for kind, rel in listing:
            if kind == "whiteout":
                head, name = os.path.split(rel)
                ti = tarfile.TarInfo(os.path.join(head, ".wh." + name))
                tar.addfile(ti)
                continue
            path = os.path.join(new, rel)
            ti = tar.gettarinfo(path, arcname=rel)
            # Whole seconds, as `tar -c` writes the squashed image.
            ti.mtime = os.lstat(path).st_mtime_ns // 1_000_000_000
            if ti.isreg():
                with open(path, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)
    os.replace(tmp, out_path)
    adds = sum(1 for k, _ in listing if k == "add")
    print(f"{out_path}: {adds} entries, {len(listing) - adds} whiteouts")


# ---- check ----


def norm(name):
    name = name.strip("/")
    while name.startswith("./"):
        name = name[2:]
    return "" if name == "." else name


def xattrs_of(member):
    return tuple(sorted((k, v) for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr.")))


def record_of(tf, m):
    # A pax header may give a fraction of a second: it counts.
    mtime = int(m.mtime) if float(m.mtime).is_integer() else m.mtime
    base = (m.mode & 0o7777, m.uid, m.gid, mtime)
    x = xattrs_of(m)
    if m.isdir():
        return ("dir",) + base + (x,)
    if m.issym():
        return ("symlink",) + base + (m.linkname, x)
    if m.isreg():
        h = hashlib.sha256()
        f = tf.extractfile(m)
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
        return ("file",) + base + (m.size, h.hexdigest(), x)
    if m.ischr() or m.isblk():
        kind = "char" if m.ischr() else "block"
        return (kind,) + base + (m.devmajor, m.devminor, x)
    if m.isfifo():
        return ("fifo",) + base + (x,)
    raise SystemExit(f"{m.name}: unsupported tar entry type {m.type!r}")


def remove_below(tree, path, keep=frozenset()):
    """Removes every entry below PATH except those in KEEP."""
    prefix = path + "/" if path else ""
    for k in [k for k in tree if k.startswith(prefix) and k not in keep]:
        del tree[k]


def remove_tree(tree, path):
    tree.pop(path, None)
    remove_below(tree, path)


def apply_tar(tree, path, errors):
    """Applies layer tar PATH to TREE as an overlay driver does."""
    this_layer = set()
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            name = norm(m.name)
            if name == "":
                continue  # the root: no layer changes it
            head, base = os.path.split(name)
            if head and tree.get(head, ("missing",))[0] != "dir":
                errors.append(f"{path}: {name}: its parent is not a directory in the layers so far")
            if base == ".wh..wh..opq":
                # An opaque directory hides what lower layers have in it.
                remove_below(tree, head, keep=this_layer)
                continue
            if base.startswith(".wh."):
                remove_tree(tree, os.path.join(head, base[4:]))
                continue
            if m.islnk():
                target = norm(m.linkname)
                if target not in tree or tree[target][0] != "file":
                    errors.append(f"{path}: {name}: hardlink to {target}, which is not a file")
                    continue
                rec = tree[target]
            else:
                rec = record_of(tf, m)
            if rec[0] != "dir" or tree.get(name, ("",))[0] != "dir":
                remove_tree(tree, name)
            tree[name] = rec
            this_layer.add(name)


def tree_of_dir(root):
    """The tree at ROOT, with whole-second mtimes (as layers store them)."""
    tree = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in dirs + sorted(files):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            base = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns // 1_000_000_000)
            if stat.S_ISDIR(st.st_mode):
                rec = ("dir",) + base + ((),)
            elif stat.S_ISLNK(st.st_mode):
                rec = ("symlink",) + base + (os.readlink(p), ())
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(CHUNK), b""):
                        h.update(block)
                rec = ("file",) + base + (st.st_size, h.hexdigest(), ())
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind = "char" if stat.S_ISCHR(st.st_mode) else "block"
                rec = (kind,) + base + (os.major(st.st_rdev), os.minor(st.st_rdev), ())
            elif stat.S_ISFIFO(st.st_mode):
                rec = ("fifo",) + base + ((),)
            else:
                continue  # sockets are not in tars
            tree[rel] = rec
    return tree


def check(expected, layers):
    errors = []
    if os.path.isdir(expected):
        want = tree_of_dir(expected)
    else:
        want = {}
        apply_tar(want, expected, errors)
    got = {}
    for layer in layers:
        apply_tar(got, layer, errors)
    for name in sorted(set(want) | set(got)):
        w, g = want.get(name), got.get(name)
        if w != g:
            errors.append(f"{name}: layers give {g}, {expected} has {w}")
    what = " + ".join(os.path.basename(p) for p in layers)
    if errors:
        for e in errors[:40]:
            print(f"  {e}", file=sys.stderr)
        more = f" (first 40 shown)" if len(errors) > 40 else ""
        print(f"check: {what} != {expected}: {len(errors)} differences{more}", file=sys.stderr)
        return 1
    print(f"check: {what} == {os.path.basename(expected.rstrip('/'))} ({len(want)} entries)")
    return 0


def main(argv):
    if len(argv) == 4 and argv[0] == "diff":
        diff(*argv[1:])
        return 0
    if len(argv) >= 3 and argv[0] == "check":
        return check(argv[1], argv[2:])
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
