"""Delivery failures: reading reports, scoring members, warnings, disabling and removal."""
