"""The node's HTTP surface (Starlette): WHIP/WHEP, REST and metrics.

Errors become responses here, and only here.
"""
