"""The gateway: the public face of Storyboard (gRPC Storyboards API, REST bridge, orchestration, outputs)."""
