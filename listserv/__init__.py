"""listserv: a mailing-list manager."""
