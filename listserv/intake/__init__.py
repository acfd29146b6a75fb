"""Intake: accept mail from the MTA (LMTP/SMTP) or a hosted mailbox, store it, acknowledge."""
