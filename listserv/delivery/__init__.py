"""Outbound mail: the outbox, the delivery worker, sending limits, transports, notices and the cap."""
