"""Digests (SPEC §3 "Delivery modes"): the posts of a day or a week in one mail per member,
as MIME (`digest`) or RFC 1153 text (`digest-plain`); see docs/digests.md."""
