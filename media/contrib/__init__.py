"""Not the media plane: the test and demo peers and the synthetic source, as aiortc keeps its
tools in ``contrib``."""
