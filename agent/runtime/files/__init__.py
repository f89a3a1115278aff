"""Files on the agent's node (files in agent/runtime/files/): run directories, staged inputs and
their cache, archives, extraction, checkpoints.
"""
