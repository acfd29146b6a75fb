"""`listserv service systemd`: a hardened unit that systemd accepts, with the config in use."""

from __future__ import annotations

import getpass
import shutil
import subprocess

import pytest

from listserv.config import load_settings


def test_the_printed_unit_is_hardened_and_names_the_config_in_use(cli, config_path):
    unit = cli("service", "systemd").output
    settings = load_settings(config_path)
    lines = unit.splitlines()
    assert f"User={getpass.getuser()}" in lines
    [exec_start] = [line for line in lines if line.startswith("ExecStart=")]
    executable, *arguments = exec_start.removeprefix("ExecStart=").split()
    assert executable.startswith("/") and executable.endswith("/listserv")
    assert arguments == ["--config", str(config_path), "serve"]
    assert f"ReadWritePaths={settings.data_dir}" in lines
    for setting in ("ProtectSystem=strict", "PrivateTmp=true", "NoNewPrivileges=true",
                    "Restart=on-failure"):
        assert setting in lines
    assert "CapabilityBoundingSet=" in lines  # ports above 1024: no capability at all


def test_a_port_below_1024_gets_only_the_right_to_bind_it(cli, config_path):
    config_path.write_text(config_path.read_text().replace(
        "[intake.smtp]\nport = 0", "[intake.smtp]\nport = 25"))
    lines = cli("service", "systemd", "--user", "listserv").output.splitlines()
    assert "User=listserv" in lines
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in lines


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian: apt-get install systemd)")
def test_systemd_analyze_verify_accepts_the_unit(cli, tmp_path):
    unit = tmp_path / "listserv.service"
    unit.write_text(cli("service", "systemd").output)
    checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    # Warnings about the unit itself (other units' noise on a container is not ours).
    assert "listserv.service" not in checked.stderr, checked.stderr
