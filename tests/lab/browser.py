"""The reports' HTML pages as a person sees them: Debian's chromium, headless, in a network namespace of its own
with no interface at all (it reaches nothing - a page of ours loads nothing from anywhere anyway), takes a
screenshot of the page and logs what its console said."""
import os
import shutil
import subprocess
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(TOP, "tests", "output", "screenshots")


def render(html_path, name, width=1280, height=900):
    """Screenshot HTML_PATH to tests/output/screenshots/NAME.png. Returns {'png', 'bytes', 'size': (w, h),
    'console': [console lines]}; raises RuntimeError when chromium fails or writes no image."""
    chromium = shutil.which("chromium")
    if not chromium:
        raise RuntimeError("chromium is not installed (tests/lab/setup.sh installs it)")
    os.makedirs(SHOTS, exist_ok=True)
    png = os.path.join(SHOTS, name + ".png")
    if os.path.exists(png):
        os.unlink(png)
    profile = tempfile.mkdtemp(prefix="vmm-chromium-")
    try:
        p = subprocess.run(["unshare", "--net", chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-first-run", "--disable-extensions", "--disable-background-networking",
                            "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
                            "--window-size=%d,%d" % (width, height), "--screenshot=" + png,
                            "file://" + os.path.abspath(html_path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=180,
                           check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if p.returncode != 0 or not os.path.exists(png):
        raise RuntimeError("chromium failed (%d):\n%s" % (p.returncode, p.stderr[-3000:]))
    with open(png, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise RuntimeError("chromium wrote no PNG to %s" % png)
    size = (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    console = [line for line in p.stderr.splitlines() if ":CONSOLE" in line]
    return {"png": png, "bytes": os.path.getsize(png), "size": size, "console": console}


def overflow_px(html_path, width=1280, height=900):
    """How many pixels the page at HTML_PATH runs past the right edge of a WIDTH px window (0: it fits - no
    horizontal scrollbar). The page is loaded as it is, with one script appended that writes the page's scroll
    width less the window's into the DOM, which chromium prints (--dump-dom)."""
    chromium = shutil.which("chromium")
    if not chromium:
        raise RuntimeError("chromium is not installed (tests/lab/setup.sh installs it)")
    with open(html_path) as f:
        page = f.read()
    probe = ('<script>document.body.setAttribute("data-overflow", String(Math.max(0, '
             'document.documentElement.scrollWidth - window.innerWidth)));</script>')
    work = tempfile.mkdtemp(prefix="vmm-chromium-")
    try:
        measured = os.path.join(work, "page.html")
        with open(measured, "w") as f:
            f.write(page.replace("</body>", probe + "</body>") if "</body>" in page else page + probe)
        p = subprocess.run(["unshare", "--net", chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-first-run", "--disable-extensions", "--disable-background-networking",
                            "--user-data-dir=" + os.path.join(work, "profile"), "--hide-scrollbars",
                            "--window-size=%d,%d" % (width, height), "--dump-dom", "file://" + measured],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=180,
                           check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    marker = 'data-overflow="'
    if p.returncode != 0 or marker not in p.stdout:
        raise RuntimeError("chromium did not measure the page (%d):\n%s" % (p.returncode, p.stderr[-3000:]))
    return int(p.stdout.split(marker, 1)[1].split('"', 1)[0])
