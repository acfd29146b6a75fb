"""The operator's commands: health, the service unit, upgrades, backups (SPEC §4, §7)."""
