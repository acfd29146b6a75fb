"""Newsletter column submissions: intake, revisions, the editors' desk, calls and export."""
