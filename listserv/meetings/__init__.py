"""Quarterly meetings: the series, reminders with calendar parts, peer-input sign-up."""
