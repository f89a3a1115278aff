"""The agent runtime (files in agent/runtime/): register, claim, run attempts, heartbeat, deliver
reports through the outbox.
"""
