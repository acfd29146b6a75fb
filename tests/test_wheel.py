"""The built package works on its own: a wheel, installed into a fresh venv, outside the tree.

The source tree's committed files (`git ls-files`, so no build artefacts or stray files of the
working tree) are copied to a temporary folder, built into an sdist and a wheel from that sdist
(what `python -m build` and distro packagers do), and installed into a venv of its own. That
venv borrows the test environment's installed dependencies through a .pth file, which also
keeps everything offline; the editable install of the source tree stays invisible to it, as a
.pth file names folders for `sys.path` but does not run the .pth files inside them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .daemons import DaemonProcess
from .helpers import LIST, parse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 300


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command; fail with its output unless it exits 0."""
    command = [str(a) for a in args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def clean_checkout(dest: Path) -> Path:
    """The files git tracks in the source tree, copied to `dest` (as a fresh clone has them)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("the wheel test builds from a git checkout of the source tree")
    listed = run("git", "ls-files", "-z", cwd=ROOT).split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def build_wheel(checkout: Path, dist: Path) -> Path:
    """An sdist of `checkout` (the PEP 517 hook itself), then a wheel built from that sdist."""
    sdist = run(sys.executable, "-c",
                "import sys; from setuptools import build_meta; "
                "print(build_meta.build_sdist(sys.argv[1]))", dist, cwd=checkout)
    sdist_path = dist / sdist.strip().splitlines()[-1]
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "--quiet", "--wheel-dir", dist, sdist_path, cwd=dist)
    (wheel,) = dist.glob("listserv-*.whl")
    return wheel


def fresh_venv(venv: Path, wheel: Path, cwd: Path) -> Path:
    """A new venv with only `wheel` installed, borrowing this environment's dependencies."""
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=cwd)
    python = venv / "bin" / "python"
    # Installed before the .pth exists, so pip never sees the source tree's own install.
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "--quiet", wheel, cwd=cwd)
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                  cwd=cwd).strip()
    ours = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    (Path(purelib) / "test-dependencies.pth").write_text("\n".join(ours) + "\n")
    return venv / "bin"


def test_a_wheel_installed_in_a_fresh_venv_runs_outside_the_source_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = build_wheel(clean_checkout(tmp_path / "checkout"), dist)
    bin_dir = fresh_venv(tmp_path / "venv", wheel, tmp_path)

    site = tmp_path / "site"  # the operator's folder, far from the source tree
    site.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LISTSERV_"))}
    env["HOME"] = str(tmp_path)  # no ~/.config/listserv of the person running the tests

    # The imports come from the fresh venv, not from the source tree or its editable install.
    where = json.loads(run(bin_dir / "python", "-c",
                           "import json, cli, listserv.mail.render as r, listserv.web.pages as w; "
                           "print(json.dumps([cli.__file__, r.__file__, str(r.TEMPLATES), "
                           "str(w.TEMPLATES)]))",
                           cwd=site, env=env))
    for path in where:
        assert Path(path).is_relative_to(tmp_path / "venv"), where
    # The web pages' templates are package data too: every language, the stylesheet.
    web_templates = Path(where[3])
    for name in ("base.html", "confirm.html", "style.css", *(f"{lang}/texts.html" for lang in
                                                               ("en", "es", "fr", "de", "pt"))):
        assert (web_templates / name).is_file(), name

    # The statistical reader of requests loads its weights from the installed package.
    weights = run(bin_dir / "python", "-c",
                  "from listserv.intent.model import shipped; print(len(shipped().weights))",
                  cwd=site, env=env)
    assert int(weights) > 1000, weights

    config = site / "listserv.toml"
    config.write_text("[intake.lmtp]\nport = 0\n[intake.smtp]\nport = 0\n")
    listserv = bin_dir / "listserv"
    for command in (["init"], ["lists", "create", LIST, "--owner", "chair@example.org"],
                    ["members", "add", LIST, "ann@example.net", "--name", "Ann Example"]):
        run(listserv, "--config", config, *command, cwd=site, env=env)
    # The unit's template is package data: the wheel carries it, and ExecStart names this venv.
    unit = run(listserv, "--config", config, "service", "systemd", cwd=site, env=env)
    assert f"ExecStart={listserv} --config {config} serve" in unit.splitlines()

    # The daemon delivers the welcome `members add` rendered into the Maildir outbox.
    data_dir = site / "listserv-data"
    outbox = data_dir / "outbox" / "new"
    daemon = DaemonProcess(config, data_dir / "run", tmp_path / "serve.log", program=listserv,
                           environ=env)
    try:
        daemon.wait_until(lambda: any(outbox.glob("*")), "deliver the welcome")
        code, _ = daemon.terminate()
    finally:
        daemon.reap()
    assert code == 0, daemon.log_text()

    (delivered,) = outbox.glob("*")
    welcome = parse(delivered.read_bytes())
    assert welcome["To"] == "ann@example.net"
    assert welcome["Subject"] == "Welcome to the shma list"
    text = welcome.get_content()
    assert f"Welcome to {LIST}, Ann Example!" in text
    template = (ROOT / "templates" / "emails" / "welcome.txt").read_text()
    for sentence in ("To write to everyone on the list", "To leave the list at any time"):
        assert sentence in template, "welcome.txt changed: pick another sentence of it"
        assert sentence in text, text
