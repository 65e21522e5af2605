"""This node's streams around the media engine: local publish and play, the supervised pulls,
and the WHIP/WHEP client they pull with."""
