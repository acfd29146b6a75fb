"""The operator's commands: health at a glance, the service unit, upgrades (SPEC §4, §7)."""
