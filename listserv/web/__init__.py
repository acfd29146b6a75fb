"""The small HTTP endpoint on the daemon's loop (SPEC §3, §7 `[web]`): one-click unsubscribe (RFC 8058) and confirmation pages."""
