"""Routing: pure decisions over a snapshot of the cluster, no I/O.

Where a node pulls a stream from (``placement``), and which node should serve
a client.
"""
