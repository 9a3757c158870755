"""Build the lab guest: an uncompressed Debian kernel (PVH boot) and a busybox initramfs.

The kernel comes from Debian's kernel package (the one ``linux-image-amd64`` depends on), downloaded
with ``apt-get download`` and unpacked with ``dpkg -x`` into the cache: nothing is installed into
/boot. The initramfs holds static busybox, the virtio modules, the project's ``labguest`` workload
binary (built here with ``gcc -static``) and ``init``. A stamp over every input makes a second run a
no-op.
"""
import argparse
import glob
import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
           "failover", "net_failover", "virtio_net", "virtio_blk", "button", "evdev", "virtio_console"]


def log(msg):
    print("[guest %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def kernel_package():
    for attempt in range(2):
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                             text=True, check=False).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("Depends: linux-image-"):
                return line.split()[1]
        if attempt == 0:
            run(["apt-get", "update", "-qq"])
    sys.exit("guest: cannot find the Debian kernel package (apt-cache depends linux-image-amd64)")


def decompress_kernel(vmlinuz):
    """Find the compressed payload inside a bzImage and return the ELF vmlinux it holds."""
    data = open(vmlinuz, "rb").read()
    for magic, kind in ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd")):
        off = data.find(magic)
        while off >= 0:
            try:
                if kind == "xz":
                    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[off:])
                elif kind == "gzip":
                    out = gzip.GzipFile(fileobj=__import__("io").BytesIO(data[off:])).read()
                else:
                    out = subprocess.run(["zstd", "-dc"], input=data[off:], capture_output=True,
                                         check=False).stdout
                if out[:4] == b"\x7fELF":
                    return out
            except (lzma.LZMAError, OSError, EOFError):
                pass
            off = data.find(magic, off + 1)
    sys.exit("guest: no ELF kernel found inside %s" % vmlinuz)


def stamp_of(pkg):
    h = hashlib.sha256(pkg.encode())
    for name in ("build.py", "init.sh", "labguest.c"):
        h.update(open(os.path.join(HERE, name), "rb").read())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    args = ap.parse_args()
    cache = os.path.abspath(args.cache)
    out = os.path.join(cache, "guest")
    pkg = kernel_package()
    stamp = stamp_of(pkg)
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest) and json.load(open(manifest)).get("stamp") == stamp:
        log("guest kernel and initramfs up to date (%s)" % pkg)
        return
    t0 = time.time()
    debs = os.path.join(cache, "debs")
    os.makedirs(debs, exist_ok=True)
    if not glob.glob(os.path.join(debs, pkg + "_*.deb")):
        log("downloading %s" % pkg)
        run(["apt-get", "download", "-qq", "-o", "APT::Sandbox::User=root", pkg], cwd=debs)
    deb = sorted(glob.glob(os.path.join(debs, pkg + "_*.deb")))[-1]
    root = os.path.join(cache, "kernel-root")
    shutil.rmtree(root, ignore_errors=True)
    run(["dpkg", "-x", deb, root])
    vmlinuz = sorted(glob.glob(os.path.join(root, "boot", "vmlinuz-*")))[0]
    kver = os.path.basename(vmlinuz)[len("vmlinuz-"):]

    build = os.path.join(cache, "guest-build")
    shutil.rmtree(build, ignore_errors=True)
    for d in ("bin", "lib/modules", "proc", "sys", "dev", "run", "tmp"):
        os.makedirs(os.path.join(build, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(build, "bin", "busybox"))
    run(["gcc", "-static", "-O2", "-Wall", "-o", os.path.join(build, "bin", "labguest"),
         os.path.join(HERE, "labguest.c")])
    with open(os.path.join(build, "init"), "w") as f:
        f.write("#!/bin/busybox sh\n" + open(os.path.join(HERE, "init.sh")).read())
    os.chmod(os.path.join(build, "init"), 0o755)
    moddir = os.path.join(root, "lib", "modules", kver)
    builtin = open(os.path.join(moddir, "modules.builtin")).read()
    found = []
    for name in MODULES:
        hits = glob.glob(os.path.join(moddir, "kernel", "**", name + ".ko*"), recursive=True)
        if not hits:
            if "/%s.ko" % name in builtin:
                continue
            sys.exit("guest: module %s not in %s" % (name, kver))
        src = hits[0]
        dst = os.path.join(build, "lib", "modules", name + ".ko")
        if src.endswith(".xz"):
            open(dst, "wb").write(lzma.decompress(open(src, "rb").read()))
        elif src.endswith(".zst"):
            open(dst, "wb").write(subprocess.run(["zstd", "-dc", src], check=True,
                                                 capture_output=True).stdout)
        else:
            shutil.copy(src, dst)
        found.append(name)

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vmlinux.tmp"), "wb") as f:
        f.write(decompress_kernel(vmlinuz))
    os.replace(os.path.join(out, "vmlinux.tmp"), os.path.join(out, "vmlinux"))
    files = subprocess.run("find . | sort", shell=True, cwd=build, check=True, capture_output=True).stdout
    with open(os.path.join(out, "initramfs.cpio.tmp"), "wb") as f:
        run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=build, input=files, stdout=f)
    os.replace(os.path.join(out, "initramfs.cpio.tmp"), os.path.join(out, "initramfs.cpio"))
    shutil.rmtree(build)
    shutil.rmtree(root)
    json.dump({"stamp": stamp, "package": pkg, "kernel": kver, "modules": found},
              open(manifest, "w"), indent=1)
    log("built guest kernel %s and initramfs (%d modules) in %.1f s" % (kver, len(found), time.time() - t0))


if __name__ == "__main__":
    main()
