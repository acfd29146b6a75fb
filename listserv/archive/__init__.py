"""The archive (SPEC §3): every distributed post kept, searched, exported as mboxrd, fetched by members with `index` and `get N`."""
