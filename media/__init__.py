"""tierstream's media plane: WebRTC in, encoded frames fanned out, never transcoded.

It knows nothing of the cluster: it takes SDP strings and stream ids, and reports
events to a listener that the control plane hands it.
"""
