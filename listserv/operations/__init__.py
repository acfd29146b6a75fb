"""Operating the service: backups that restore (SPEC §4, §7)."""
