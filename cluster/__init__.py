"""tierstream's control plane: where streams live and who pulls from whom.

It decides *where*; the media plane (``media``) decides *how*. Nothing here
moves media, and nothing in ``media`` imports this package.
"""
