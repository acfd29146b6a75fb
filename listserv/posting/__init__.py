"""Posts to the list: distribution copies, moderation of held posts, DMARC mitigation."""
