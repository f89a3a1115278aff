"""Waking waiting claims (files in server/queue/waking/): the in-process wakeup and the relay
that carries wakeups between replicas through PostgreSQL LISTEN/NOTIFY.
"""
